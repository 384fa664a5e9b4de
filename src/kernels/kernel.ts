import { randomUUID } from "node:crypto";
import { chmod, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { AbortedError } from "../errors.js";
import { signalOfExitCode } from "../sandbox/exit-status.js";
import type { ProcessExit, Sandbox, SandboxProcess } from "../sandbox/types.js";
import { deadlineSignal, delay, raceSignal } from "../util/abort.js";
import { type ConnectionInfo, endpoint, newConnectionInfo, writeConnectionFile } from "./connection.js";
import { KernelDiedError, KernelStartError } from "./errors.js";
import { Heartbeat, type HeartbeatOptions } from "./heartbeat.js";
import {
  type ConnectionCounters,
  KernelConnection,
  type MessageListener,
  type RejectedMessage,
} from "./kernel-connection.js";
import { type KernelspecInfo, kernelArgv } from "./kernelspec.js";
import type { Channel, JupyterMessage, KernelInfoReplyContent, MessageHeader } from "./messages.js";
import { replyTypeOf } from "./messages.js";

/** Lifecycle status of a kernel, spelled as the protocol's `execution_state`. */
export type KernelStatus = "starting" | "idle" | "busy" | "restarting" | "dead";

/** Why and how a kernel died. */
export interface KernelDeath {
  reason: "exited" | "heartbeat" | "start_failed" | "shutdown";
  exit_code: number | null;
  signal: string | null;
  /** The last lines the kernel wrote to stderr. */
  stderr: string;
  /**
   * The sandbox limit that killed it: `memory` when its cgroup's OOM killer did. Absent when
   * no limit is known to have (or the sandbox cannot tell).
   */
  limit?: "memory";
}

/** Which step of the shutdown escalation ended the kernel. */
export type ShutdownPath = "already_dead" | "shutdown_request" | "sigterm" | "sigkill";

export interface KernelStartOptions {
  spec: KernelspecInfo;
  /** How the kernel process is started and confined. */
  sandbox: Sandbox;
  /** Directory for the connection file (private to runcell). */
  runtimeDir: string;
  /** The base environment; the kernelspec's `env` is applied over it, then `envOverrides`. */
  env: Record<string, string>;
  envOverrides?: Record<string, string>;
  cwd?: string;
  /** Arguments appended to the kernelspec's argv. */
  extraArguments?: string[];
  /**
   * For IPython kernels: where IPython keeps its input history. Default `:memory:` (as nbclient
   * does): the on-disk SQLite history costs ~1.5 ms of kernel CPU per execution and is shared,
   * and contended, by every kernel of the user. `null` leaves IPython's default.
   */
  ipythonHistoryFile?: string | null;
  /** Deadline for the first `kernel_info_reply`, in ms. Default 60000. */
  startTimeoutMs?: number;
  /** Heartbeat settings, or false to rely on process exit alone. */
  heartbeat?: HeartbeatOptions | false;
  /** Largest inbound message accepted, in bytes. Default 64 MiB. */
  maxMessageBytes?: number;
  /** How long each shutdown step may take before escalating, in ms. Default 2000. */
  shutdownStepMs?: number;
  /** Aborts the start (the half-started kernel is cleaned up). */
  signal?: AbortSignal;
  /** Told about each dropped inbound message. */
  onReject?: (rejected: RejectedMessage) => void;
  /**
   * Called once the kernel process exists (before it is ready): a caller with other start-up
   * work can do it then, while the kernel boots, without delaying its launch.
   */
  onSpawn?: () => void;
}

type StatusListener = (status: KernelStatus, death: KernelDeath | undefined) => void;

interface PendingReply {
  resolve: (message: JupyterMessage) => void;
  reject: (error: Error) => void;
}

/**
 * A live Jupyter kernel: its process, its sockets and its status. Owns everything it starts;
 * `dispose()` (idempotent) shuts it down with a bounded escalation and removes its files.
 */
export class Kernel {
  readonly id = randomUUID();
  readonly spec: KernelspecInfo;
  readonly #options: KernelStartOptions;
  #status: KernelStatus = "starting";
  #death: KernelDeath | undefined;
  #info: KernelInfoReplyContent | undefined;
  #process: SandboxProcess | undefined;
  #connection: KernelConnection | undefined;
  #heartbeat: Heartbeat | undefined;
  #connectionFile: string | undefined;
  /** With the ipc transport: the directory holding the connection file and the sockets. */
  #socketDir: string | undefined;
  /** Bumped on every launch so exits of replaced processes are ignored. */
  #generation = 0;
  /** False from a launch until the kernel answered; exits meanwhile are start failures. */
  #ready = false;
  /** True while runcell itself is stopping the process (restart, dispose). */
  #stopping = false;
  #disposed: Promise<ShutdownPath> | undefined;
  #restarting: Promise<void> | undefined;
  /** The latest removal of the connection file and socket dir (see #removeConnectionFile). */
  #removal: Promise<void> = Promise.resolve();
  readonly #messageListeners = new Set<MessageListener>();
  readonly #statusListeners = new Set<StatusListener>();
  readonly #rejectListeners = new Set<(rejected: RejectedMessage) => void>();
  readonly #pending = new Map<string, PendingReply>();

  private constructor(options: KernelStartOptions) {
    this.spec = options.spec;
    this.#options = options;
  }

  /** Launches a kernel and resolves once it has answered `kernel_info_request` and iopub flows. */
  static async start(options: KernelStartOptions): Promise<Kernel> {
    const kernel = new Kernel(options);
    await kernel.#launchWithRetry(options.signal);
    return kernel;
  }

  get status(): KernelStatus {
    return this.#status;
  }

  /** Set once the kernel is dead: why, with exit code and stderr tail. */
  get death(): KernelDeath | undefined {
    return this.#death;
  }

  /** The kernel's `kernel_info_reply` content (language, implementation, protocol version). */
  get info(): KernelInfoReplyContent | undefined {
    return this.#info;
  }

  get pid(): number | undefined {
    return this.#process?.pid;
  }

  get connectionFile(): string | undefined {
    return this.#connectionFile;
  }

  /** Inbound traffic counts of the current connection (received, rejected by reason). */
  get counters(): ConnectionCounters | undefined {
    return this.#connection?.counters;
  }

  /** Every valid inbound message. Returns the unsubscribe function. */
  onMessage(listener: MessageListener): () => void {
    this.#messageListeners.add(listener);
    return () => this.#messageListeners.delete(listener);
  }

  /** Every dropped inbound message (bad signature, malformed, oversize…). Returns the unsubscribe function. */
  onReject(listener: (rejected: RejectedMessage) => void): () => void {
    this.#rejectListeners.add(listener);
    return () => this.#rejectListeners.delete(listener);
  }

  /** Status changes (and the death record when it becomes `dead`). Returns the unsubscribe function. */
  onStatus(listener: StatusListener): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  /** Sends a message without waiting for a reply. */
  send(
    channel: Exclude<Channel, "iopub">,
    msgType: string,
    content: unknown,
    options: {
      parentHeader?: Partial<MessageHeader>;
      msgId?: string;
      metadata?: Record<string, unknown>;
    } = {},
  ): Promise<MessageHeader> {
    if (!this.#connection || this.#status === "dead") {
      return Promise.reject(this.#deadError("cannot send"));
    }
    return this.#connection.send(channel, msgType, content, options);
  }

  /**
   * Sends a request and resolves with its reply. Rejects with KernelDiedError if the kernel dies
   * or restarts first, or with the signal's reason when `signal` fires.
   */
  async request<T = Record<string, unknown>>(
    channel: "shell" | "control",
    msgType: string,
    content: unknown,
    options: { signal?: AbortSignal; msgId?: string } = {},
  ): Promise<JupyterMessage<T>> {
    const msgId = options.msgId ?? randomUUID();
    const reply = new Promise<JupyterMessage>((resolve, reject) =>
      this.#pending.set(msgId, { resolve, reject }),
    );
    try {
      await this.send(channel, msgType, content, { msgId });
      const message = options.signal ? await raceSignal(reply, options.signal, msgType) : await reply;
      return message as JupyterMessage<T>;
    } finally {
      this.#pending.delete(msgId);
    }
  }

  /**
   * Interrupts the running code: SIGINT to the kernel's process group, or an `interrupt_request`
   * on control when the kernelspec's `interrupt_mode` is `message` or the sandbox does not
   * forward signals (ipykernel then signals its own process group).
   */
  async interrupt(signal?: AbortSignal): Promise<void> {
    if (this.#status === "dead" || !this.#process) throw this.#deadError("cannot interrupt");
    if (this.spec.interrupt_mode === "message" || !this.#options.sandbox.forwardsSignals) {
      await this.request("control", "interrupt_request", {}, { signal: signal ?? deadlineSignal(5000) });
    } else {
      this.#process.signalGroup("SIGINT");
    }
  }

  /**
   * Replaces the kernel process with a fresh one (state is lost). With `now`, the old process is
   * killed at once instead of being asked to shut down (for a kernel that ignores interrupts).
   * Pending replies are rejected. Concurrent calls share one restart.
   */
  restart(options: { now?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    if (this.#disposed) return Promise.reject(this.#deadError("cannot restart a disposed kernel"));
    this.#restarting ??= (async () => {
      this.#setStatus("restarting");
      await this.#stopProcess(options.now ? "kill" : "polite", true);
      this.#death = undefined;
      try {
        await this.#launchWithRetry(options.signal);
      } catch (error) {
        this.#markDead({
          reason: "start_failed",
          exit_code: null,
          signal: null,
          stderr: (error as KernelStartError).data?.stderr ?? "",
        });
        throw error;
      }
    })().finally(() => {
      this.#restarting = undefined;
    });
    return this.#restarting;
  }

  /**
   * Shuts the kernel down: `shutdown_request`, then SIGTERM, then SIGKILL to its process group,
   * each step bounded by `shutdownStepMs`. With `now`, SIGKILL at once: for a kernel with
   * nothing left to save (a sandboxed kernel's writable places vanish with it), which spares
   * ipykernel's own shutdown (about 0.2 s). Idempotent (the first call's mode holds); resolves
   * with the step that ended it.
   */
  dispose(options: { now?: boolean } = {}): Promise<ShutdownPath> {
    this.#disposed ??= (async () => {
      await this.#restarting?.catch(() => undefined);
      const path = await this.#stopProcess(options.now ? "kill" : "polite", false);
      this.#markDead({ reason: "shutdown", exit_code: null, signal: null, stderr: "" });
      this.#statusListeners.clear();
      this.#messageListeners.clear();
      this.#rejectListeners.clear();
      return path;
    })();
    return this.#disposed;
  }

  /**
   * A TCP port is free when chosen but bound only later by the kernel, so another process can
   * take it in between. A start that failed that way is retried with fresh ports (twice at most).
   */
  async #launchWithRetry(signal?: AbortSignal): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#launch(signal);
      } catch (error) {
        const portTaken =
          error instanceof KernelStartError &&
          /address already in use|EADDRINUSE/i.test(error.data?.stderr ?? "");
        if (!portTaken || attempt >= 3 || signal?.aborted || this.#options.sandbox.kernelTransport === "ipc")
          throw error;
      }
    }
  }

  async #launch(signal?: AbortSignal): Promise<void> {
    const generation = ++this.#generation;
    const options = this.#options;
    // A kernel in its own network namespace is reached through Unix sockets in a directory of its
    // own, mounted into the sandbox at the same path; one on the host network through loopback TCP.
    let info: ConnectionInfo;
    let binds: Array<{ path: string; writable: boolean; target?: string }> = [];
    if (options.sandbox.kernelTransport === "ipc") {
      this.#socketDir = join(options.runtimeDir, `k-${this.id}`);
      await rm(this.#socketDir, { recursive: true, force: true });
      await mkdir(this.#socketDir, { mode: 0o700 });
      // The kernel runs as another uid; the runtime dir above stays 0700, so only it gets in.
      await chmod(this.#socketDir, 0o777);
      info = await newConnectionInfo(this.spec.name, {
        kind: "ipc",
        ipcPrefix: join(this.#socketDir, "kernel"),
      });
      this.#connectionFile = await writeConnectionFile(this.#socketDir, this.id, info, 0o644);
      binds = [{ path: this.#socketDir, writable: true }];
    } else {
      info = await newConnectionInfo(this.spec.name);
      this.#connectionFile = await writeConnectionFile(options.runtimeDir, this.id, info);
    }
    const env = { ...options.env, ...this.spec.env, ...options.envOverrides };
    const argv = [...kernelArgv(this.spec, this.#connectionFile), ...(options.extraArguments ?? [])];
    // Such a kernel is interrupted with interrupt_request, and ipykernel then signals its process
    // group only if it leads one; in bubblewrap it is pid 2 in the group of the sandbox's init,
    // so it would interrupt itself and not the children it started. setsid makes it a group
    // leader (it execs without forking, since the caller does not lead a group).
    if (!options.sandbox.forwardsSignals) argv.unshift("/usr/bin/setsid");
    const historyFile = options.ipythonHistoryFile === undefined ? ":memory:" : options.ipythonHistoryFile;
    if (historyFile !== null && isIPythonKernel(this.spec))
      argv.push(`--HistoryManager.hist_file=${historyFile}`);
    const proc = await options.sandbox.spawn({ argv, env, cwd: options.cwd, binds });
    this.#process = proc;
    options.onSpawn?.();
    const onExit = async (exit: ProcessExit) => {
      // The sandbox's cgroup says whether its OOM killer ended the kernel (a SIGKILL alone
      // cannot tell that from any other kill). Reading it takes microseconds.
      const usage = await proc.usage().catch(() => null);
      if (generation !== this.#generation || this.#stopping) return;
      this.#markDead({
        reason: "exited",
        exit_code: exit.code,
        signal: exit.signal ?? (options.sandbox.kind === "bwrap" ? signalOfExitCode(exit.code) : null),
        stderr: proc.stderrTail(),
        ...(usage?.oomKilled ? { limit: "memory" as const } : {}),
      });
    };
    void proc.exited.then((exit) => {
      // An exit during start is the start's failure (#waitReady reports it, and may retry).
      if (generation !== this.#generation || this.#stopping || !this.#ready) return;
      void onExit(exit);
    });
    this.#ready = false;
    const connection = new KernelConnection(info, {
      maxMessageBytes: options.maxMessageBytes ?? 64 * 1024 * 1024,
      onReject: (rejected) => {
        options.onReject?.(rejected);
        for (const listener of this.#rejectListeners) listener(rejected);
      },
    });
    this.#connection = connection;
    connection.onMessage((message) => this.#dispatch(message));
    const deadline = deadlineSignal(options.startTimeoutMs ?? 60_000, signal);
    try {
      await this.#waitReady(connection, proc, deadline);
    } catch (error) {
      this.#stopping = true;
      connection.close();
      await proc.dispose(500);
      this.#stopping = false;
      await this.#removeConnectionFile();
      const stderr = proc.stderrTail();
      const exit = proc.exitStatus;
      const why =
        error instanceof KernelStartError
          ? error.message
          : deadline.aborted && !(signal?.aborted ?? false)
            ? `kernel ${this.spec.name} did not answer kernel_info_request within ${options.startTimeoutMs ?? 60_000} ms`
            : `starting kernel ${this.spec.name}: ${(error as Error).message}`;
      this.#death = {
        reason: "start_failed",
        exit_code: exit?.code ?? null,
        signal: exit?.signal ?? null,
        stderr,
      };
      // The status becomes dead in #launchWithRetry, once no retry follows.
      throw new KernelStartError(
        stderr ? `${why}\n--- kernel stderr ---\n${stderr.trimEnd()}` : why,
        stderr,
        error,
      );
    }
    if (options.heartbeat !== false) {
      this.#heartbeat = new Heartbeat(
        endpoint(info, info.hb_port),
        () => {
          if (generation !== this.#generation || this.#stopping) return;
          this.#markDead({ reason: "heartbeat", exit_code: null, signal: null, stderr: proc.stderrTail() });
          void proc.dispose(0);
        },
        options.heartbeat,
      );
      this.#heartbeat.start();
    }
    this.#ready = true;
    this.#setStatus("idle");
    // Exited in the instant between the readiness check and now: nobody else will notice.
    if (proc.exitStatus) void onExit(proc.exitStatus);
  }

  /**
   * Ready means: a kernel_info_reply on shell AND at least one iopub message. ZeroMQ's
   * subscriptions take a moment to propagate, so like jupyter_client we nudge with further
   * kernel_info requests until iopub is seen to flow; otherwise the first execution's
   * outputs could be lost.
   */
  async #waitReady(connection: KernelConnection, proc: SandboxProcess, deadline: AbortSignal): Promise<void> {
    let iopubSeen = false;
    let wakeIopub: (() => void) | undefined;
    const stopWatching = connection.onMessage((message) => {
      if (message.channel === "iopub") {
        iopubSeen = true;
        wakeIopub?.();
      }
    });
    const exited = proc.exited.then((exit) => {
      throw new KernelStartError(
        `kernel ${this.spec.name} exited during start (exit code ${exit.code ?? "none"}, signal ${exit.signal ?? "none"})`,
        proc.stderrTail(),
      );
    });
    exited.catch(() => undefined);
    try {
      const reply = await Promise.race([
        this.request<KernelInfoReplyContent>("shell", "kernel_info_request", {}, { signal: deadline }),
        exited,
      ]);
      this.#info = reply.content;
      while (!iopubSeen) {
        const seen = new Promise<void>((resolve) => {
          wakeIopub = resolve;
        });
        void this.request("shell", "kernel_info_request", {}, { signal: deadline }).catch(() => undefined);
        await Promise.race([seen, delay(50, deadline), exited]);
      }
      // Else the first input() could be lost: the kernel drops input_request to an unknown peer.
      await Promise.race([raceSignal(connection.stdinReady, deadline, "the stdin connection"), exited]);
    } finally {
      stopWatching();
    }
  }

  #dispatch(message: JupyterMessage): void {
    if (message.channel === "iopub" && message.header.msg_type === "status") {
      const state = (message.content as { execution_state?: unknown }).execution_state;
      if ((state === "busy" || state === "idle") && (this.#status === "busy" || this.#status === "idle")) {
        this.#setStatus(state);
      }
    } else if (message.channel === "shell" || message.channel === "control") {
      const parentId = message.parent_header.msg_id;
      const pending = parentId === undefined ? undefined : this.#pending.get(parentId);
      if (pending && message.header.msg_type === replyTypeOf(message.parent_header.msg_type ?? "")) {
        pending.resolve(message);
      }
    }
    for (const listener of this.#messageListeners) listener(message);
  }

  /** Stops the current process; `polite` tries shutdown_request first. Returns the step that worked. */
  async #stopProcess(mode: "polite" | "kill", restart: boolean): Promise<ShutdownPath> {
    const proc = this.#process;
    const connection = this.#connection;
    this.#stopping = true;
    this.#heartbeat?.stop();
    this.#heartbeat = undefined;
    const stepMs = this.#options.shutdownStepMs ?? 2000;
    try {
      if (!proc || proc.exitStatus) return "already_dead";
      const exitedWithin = async (ms: number) => {
        // Cancel the step timer once the process exits: a pending timer would keep Node alive.
        const step = new AbortController();
        try {
          return await Promise.race([proc.exited.then(() => true), delay(ms, step.signal).then(() => false)]);
        } finally {
          step.abort();
        }
      };
      if (mode === "polite" && connection && this.#status !== "dead") {
        await this.request(
          "control",
          "shutdown_request",
          { restart },
          { signal: deadlineSignal(stepMs) },
        ).catch(() => undefined);
        if (await exitedWithin(stepMs)) return "shutdown_request";
      }
      if (mode === "polite") {
        proc.signalGroup("SIGTERM");
        if (await exitedWithin(stepMs)) return "sigterm";
      }
      proc.signalGroup("SIGKILL");
      await proc.exited;
      return "sigkill";
    } finally {
      connection?.close();
      this.#connection = undefined;
      await proc?.dispose(0);
      this.#rejectPending(restart ? "the kernel restarted" : "the kernel shut down");
      await this.#removeConnectionFile();
      this.#stopping = false;
    }
  }

  #markDead(death: KernelDeath): void {
    if (this.#status === "dead") return;
    this.#death = death;
    this.#heartbeat?.stop();
    this.#heartbeat = undefined;
    this.#connection?.close();
    this.#connection = undefined;
    this.#rejectPending(describeDeath(death));
    void this.#removeConnectionFile();
    this.#setStatus("dead");
  }

  #rejectPending(why: string): void {
    const error = new KernelDiedError(why, {
      exitCode: this.#death?.exit_code ?? null,
      signal: this.#death?.signal ?? null,
      stderr: this.#death?.stderr ?? "",
    });
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }

  #deadError(what: string): Error {
    if (this.#disposed) return new AbortedError(`${what}: the kernel was shut down`);
    return new KernelDiedError(
      `${what}: ${this.#death ? describeDeath(this.#death) : "the kernel is not running"}`,
      {
        exitCode: this.#death?.exit_code ?? null,
        signal: this.#death?.signal ?? null,
        stderr: this.#death?.stderr ?? "",
      },
    );
  }

  /**
   * Removals run one after another: the one a death starts (not awaited) must be over before a
   * restart writes the same paths again, or it deletes the new socket dir under the new process.
   */
  #removeConnectionFile(): Promise<void> {
    const file = this.#connectionFile;
    const socketDir = this.#socketDir;
    this.#removal = this.#removal.then(async () => {
      if (file) await rm(file, { force: true }).catch(() => undefined);
      if (socketDir) await rm(socketDir, { recursive: true, force: true }).catch(() => undefined);
    });
    return this.#removal;
  }

  #setStatus(status: KernelStatus): void {
    if (this.#status === status) return;
    this.#status = status;
    for (const listener of this.#statusListeners) {
      try {
        listener(status, status === "dead" ? this.#death : undefined);
      } catch {
        // a faulty listener must not break the kernel's bookkeeping
      }
    }
  }
}

/** True for kernelspecs that launch ipykernel (which accepts IPython's traitlets options). */
function isIPythonKernel(spec: KernelspecInfo): boolean {
  return spec.argv.some(
    (arg) => arg === "ipykernel_launcher" || arg === "ipykernel" || arg.endsWith("/ipykernel_launcher.py"),
  );
}

/** A one-line human description of a death, e.g. "the kernel exited with code 1". */
export function describeDeath(death: KernelDeath): string {
  switch (death.reason) {
    case "heartbeat":
      return "the kernel stopped answering its heartbeat";
    case "shutdown":
      return "the kernel was shut down";
    case "start_failed":
      return "the kernel failed to start";
    default:
      if (death.limit === "memory") {
        return `the kernel was killed by ${death.signal ?? "the kernel's OOM killer"} on reaching its memory limit`;
      }
      return death.signal
        ? `the kernel was killed by ${death.signal}`
        : `the kernel exited with code ${death.exit_code ?? "unknown"}`;
  }
}
