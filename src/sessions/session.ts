import { describeDeath, type KernelDeath, type KernelStatus } from "../kernels/kernel.js";
import { checkCode } from "../execution/check-code.js";
import type { ExecutionLog } from "../execution/execution-log.js";
import type { StdinSource } from "../execution/kernel-executor.js";
import type { EnforcedLimits, Execution } from "../execution/types.js";
import type { SessionEndReason } from "../store/types.js";
import { InvalidArgumentError } from "../errors.js";
import { QuotaExceededError, SessionEndedError } from "./errors.js";
import type { LaunchedKernel } from "./kernel-launcher.js";
import { SessionEventLog } from "./session-event-log.js";
import type { RestartReason, SessionInfo, SessionStatus } from "./types.js";

export interface SessionOptions {
  id: string;
  userId: string;
  launched: LaunchedKernel;
  fromPool: boolean;
  log: ExecutionLog;
  /** Default time limit of an execution, in ms. */
  timeoutMs: number;
  outputBytes: number;
  idleTimeoutMs: number;
  maxQueued: number;
  /** Largest accepted code, in bytes (CODE_TOO_LARGE past it). */
  maxCodeBytes: number;
  /** Ceiling on an execution's own time limit, in ms (INVALID_LIMIT past it). */
  maxTimeoutMs: number;
  envKeys: string[];
  limits: EnforcedLimits;
  /** Told whenever what `info()` shows changes in a way worth persisting. */
  onChange?: (session: Session) => void;
  /** Told once the kernel can no longer be brought back (the session has ended itself). */
  onFatal?: (session: Session, message: string) => void;
}

/** More deaths than this within DEATH_WINDOW_MS end the session instead of restarting again. */
const MAX_DEATHS = 5;
const DEATH_WINDOW_MS = 60_000;

/**
 * A stateful kernel that belongs to one user: executions run one at a time in submission order
 * (the executor's FIFO), each recorded in the execution log and on the session's event stream.
 * A kernel that dies is replaced at once, with the startup code run again, and the session says
 * its state was lost.
 */
export class Session {
  readonly id: string;
  readonly userId: string;
  readonly events: SessionEventLog;
  readonly createdAt = new Date().toISOString();
  readonly #options: SessionOptions;
  readonly #launched: LaunchedKernel;
  #lastActivity = Date.now();
  #executionCount = 0;
  #restarts = 0;
  #stateLostAt: string | null = null;
  #lastRestartReason: RestartReason | null = null;
  /** Set while the kernel is being replaced, with why. */
  #replacing: RestartReason | undefined;
  #deaths: number[] = [];
  #endedAt: string | null = null;
  #endReason: SessionEndReason | null = null;
  #ending: Promise<void> | undefined;
  readonly #detach: Array<() => void> = [];
  /** Per live execution: aborting it cancels that execution (interrupting it when it runs). */
  readonly #cancels = new Map<string, AbortController>();

  constructor(options: SessionOptions) {
    this.id = options.id;
    this.userId = options.userId;
    this.#options = options;
    this.#launched = options.launched;
    this.events = new SessionEventLog(options.id);
    const { kernel, executor } = options.launched;
    this.#detach.push(
      kernel.onStatus((status, death) => this.#onKernelStatus(status, death)),
      executor.onRestarted(() => this.#onKernelBack()),
    );
  }

  get launched(): LaunchedKernel {
    return this.#launched;
  }

  /** How many times the kernel was replaced since the session started. */
  get restarts(): number {
    return this.#restarts;
  }

  get idleTimeoutMs(): number {
    return this.#options.idleTimeoutMs;
  }

  get ended(): boolean {
    return this.#endedAt !== null;
  }

  /** Date.now() of the last submission or finished execution. */
  get lastActivity(): number {
    return this.#lastActivity;
  }

  /** True when something runs or waits: an idle cull must not touch it. */
  get busy(): boolean {
    const executor = this.#launched.executor;
    return executor.runningId !== undefined || executor.queueDepth > 0 || this.#replacing !== undefined;
  }

  get status(): SessionStatus {
    if (this.#endedAt) return "ended";
    if (this.#replacing) return "restarting";
    const kernelStatus = this.#launched.kernel.status;
    if (kernelStatus === "starting") return "starting";
    if (kernelStatus === "restarting" || kernelStatus === "dead") return "restarting";
    return this.busy ? "busy" : "idle";
  }

  info(): SessionInfo {
    const { profile, kernel, executor } = this.#launched;
    return {
      id: this.id,
      kernel: profile.kernel,
      language: kernel.spec.language,
      mode: profile.mode,
      status: this.status,
      network: profile.mode === "read_only" ? false : profile.network,
      limits: this.#options.limits,
      startup_code: profile.startupCode,
      env_keys: this.#options.envKeys,
      from_pool: this.#options.fromPool,
      kernel_id: this.#endedAt ? null : kernel.id,
      restarts: this.#restarts,
      state_lost_at: this.#stateLostAt,
      last_restart_reason: this.#lastRestartReason,
      queue_depth: executor.queueDepth,
      execution_count: this.#executionCount,
      idle_timeout_ms: this.#options.idleTimeoutMs,
      created_at: this.createdAt,
      last_activity_at: new Date(this.#lastActivity).toISOString(),
      ended_at: this.#endedAt,
      end_reason: this.#endReason,
    };
  }

  /**
   * Queues `code`; returns the live record at once and the finished one later. Throws
   * SessionEndedError when the session has ended, QuotaExceededError when its queue is full.
   */
  submit(
    code: string,
    options: { timeoutMs?: number; stdin?: StdinSource; signal?: AbortSignal; blockId?: string } = {},
  ): { execution: Execution; done: Promise<Execution> } {
    if (this.#endedAt) throw new SessionEndedError(this.id, this.#endReason);
    checkCode(code, this.#options.maxCodeBytes);
    if (options.timeoutMs !== undefined && options.timeoutMs > this.#options.maxTimeoutMs) {
      throw new InvalidArgumentError(
        "INVALID_LIMIT",
        `timeout_ms must be at most ${this.#options.maxTimeoutMs} (the server's ceiling), not ${options.timeoutMs}`,
      );
    }
    const executor = this.#launched.executor;
    if (executor.queueDepth >= this.#options.maxQueued) {
      throw new QuotaExceededError(
        "queue",
        `${executor.queueDepth} executions already wait on session ${this.id}; wait for some to finish`,
      );
    }
    this.#lastActivity = Date.now();
    this.#executionCount++;
    return this.#submit(code, { ...options, timeoutMs: options.timeoutMs ?? this.#options.timeoutMs });
  }

  #submit(
    code: string,
    options: {
      timeoutMs?: number;
      stdin?: StdinSource;
      signal?: AbortSignal;
      first?: boolean;
      storeHistory?: boolean;
      blockId?: string;
    },
  ): { execution: Execution; done: Promise<Execution> } {
    const recording = this.#options.log.open(this.userId);
    const cancel = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, cancel.signal]) : cancel.signal;
    const submitted = this.#launched.executor.submit(code, {
      ...options,
      signal,
      sessionId: this.id,
      outputBytes: this.#options.outputBytes,
      // Each request stands alone: one failing must not cancel another client's queued work.
      stopOnError: false,
      onEvent: (event) => {
        recording.onEvent(event);
        this.events.push({ type: "execution", event });
      },
    });
    // The record shows the session's enforced limits, with this execution's own time limit.
    submitted.execution.limits = {
      ...this.#options.limits,
      time_ms: options.timeoutMs ?? this.#options.timeoutMs,
    };
    recording.attach(submitted.execution);
    this.#cancels.set(submitted.execution.id, cancel);
    void submitted.done.then(() => {
      this.#cancels.delete(submitted.execution.id);
      this.#lastActivity = Date.now();
    });
    return submitted;
  }

  /** Interrupts the running execution (it ends with KeyboardInterrupt; the kernel keeps its state). */
  async interrupt(): Promise<void> {
    if (this.#endedAt) throw new SessionEndedError(this.id, this.#endReason);
    this.#lastActivity = Date.now();
    const running = this.#launched.executor.runningId;
    const cancel = running ? this.#cancels.get(running) : undefined;
    // Through the executor: the execution ends `cancelled` (and a kernel that ignores the
    // interrupt is restarted after the grace period).
    if (cancel) cancel.abort(new Error("interrupted on request"));
    else if (this.#launched.kernel.status === "busy") await this.#launched.kernel.interrupt();
  }

  /** Replaces the kernel with a fresh one (state lost; the startup code runs again). */
  async restart(): Promise<void> {
    if (this.#endedAt) throw new SessionEndedError(this.id, this.#endReason);
    this.#lastActivity = Date.now();
    this.#beginReplace("restart", "restarted on request");
    await this.#launched.kernel.restart({ now: true });
  }

  #beginReplace(reason: RestartReason, message: string): void {
    if (this.#replacing) return;
    this.#replacing = reason;
    this.events.push({ type: "session", status: "restarting", reason, state_lost: true, message });
    this.#options.onChange?.(this);
  }

  #onKernelStatus(status: KernelStatus, death: KernelDeath | undefined): void {
    if (this.#endedAt || this.#ending) return;
    if (status === "restarting") {
      // Not asked for by this session: the executor replaced a kernel that ignored a timeout's interrupt.
      this.#beginReplace("timeout", "an execution ignored its timeout's interrupt; the kernel was restarted");
    } else if (status === "dead" && death && death.reason !== "shutdown") {
      const now = Date.now();
      this.#deaths = [...this.#deaths.filter((at) => now - at < DEATH_WINDOW_MS), now];
      const message = `${describeDeath(death)}; a fresh kernel is starting and the state is lost`;
      if (this.#deaths.length > MAX_DEATHS || death.reason === "start_failed") {
        const why = `the kernel died ${this.#deaths.length} times within a minute (last: ${describeDeath(death)})`;
        this.#options.onFatal?.(this, why);
        return;
      }
      this.#replacing = undefined;
      this.#beginReplace("died", message);
      this.#launched.kernel.restart({ now: true }).catch(() => undefined);
    }
  }

  /** The kernel is back after a restart: note the loss, then run the startup code ahead of the queue. */
  #onKernelBack(): void {
    const reason = this.#replacing ?? "restart";
    this.#replacing = undefined;
    this.#restarts++;
    this.#stateLostAt = new Date().toISOString();
    this.#lastRestartReason = reason;
    const startup = this.#launched.profile.startupCode;
    if (startup.trim())
      this.#submit(startup, { first: true, storeHistory: false, timeoutMs: this.#options.timeoutMs });
    this.events.push({ type: "session", status: this.status, reason, state_lost: true });
    this.#options.onChange?.(this);
  }

  /** Ends the session: queued and running executions are cancelled, the kernel is stopped. Idempotent. */
  end(reason: SessionEndReason): Promise<void> {
    this.#ending ??= (async () => {
      this.#endReason = reason;
      this.#endedAt = new Date().toISOString();
      for (const detach of this.#detach) detach();
      this.events.push({ type: "session", status: "ended", reason });
      await this.#launched.dispose();
      this.events.close();
    })();
    return this.#ending;
  }
}
