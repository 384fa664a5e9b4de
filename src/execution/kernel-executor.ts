import { randomUUID } from "node:crypto";
import type { Kernel, KernelDeath, KernelStatus } from "../kernels/kernel.js";
import { describeDeath } from "../kernels/kernel.js";
import type { RejectedMessage } from "../kernels/kernel-connection.js";
import type {
  ClearOutputContent,
  DisplayDataContent,
  ErrorContent,
  ExecuteReplyContent,
  ExecuteRequestContent,
  ExecuteResultContent,
  InputRequestContent,
  JupyterMessage,
  StatusContent,
  StreamContent,
} from "../kernels/messages.js";
import { categorizeException, stripAnsi } from "./classify.js";
import { newExecution } from "./new-execution.js";
import { OutputCollector } from "./output-collector.js";
import type {
  DisplayOutput,
  ErrorCategory,
  Execution,
  ExecutionError,
  ExecutionEvent,
  ExecutionEventInit,
  ExecutionStatus,
  LimitKind,
  Output,
  ResultOutput,
} from "./types.js";

/** Answers `input()`: a fixed text (consumed line by line) or a function asked per prompt. */
export type StdinSource = string | ((prompt: string, password: boolean) => string | Promise<string>);

export interface ExecuteOptions {
  /** Wall-time limit in ms: the kernel is interrupted, then restarted if still busy. */
  timeoutMs?: number;
  /** Cancels the execution: dropped if queued, interrupted if running. */
  signal?: AbortSignal;
  /** Input for `input()`; without it `input()` fails with a clear error. */
  stdin?: StdinSource;
  /** When this execution fails, cancel those queued behind it (Jupyter's stop_on_error). Default true. */
  stopOnError?: boolean;
  /** Record in the kernel's history and bump its execution count. Default true. */
  storeHistory?: boolean;
  /** Cap per text stream, in bytes. Default: the executor's. */
  outputBytes?: number;
  sessionId?: string | null;
  blockId?: string | null;
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
  onResult?: (output: ResultOutput) => void;
  onDisplay?: (output: DisplayOutput) => void;
  onError?: (error: ExecutionError) => void;
  /** Every event of this execution, with its sequence number. */
  onEvent?: (event: ExecutionEvent) => void;
  /** Run before everything already queued (e.g. a session's startup code after a restart). */
  first?: boolean;
}

export interface KernelExecutorOptions {
  /** The language recorded on executions. Default: the kernelspec's. */
  language?: string;
  /** How long an interrupted execution may stay busy before the kernel is restarted, in ms. Default 5000. */
  interruptGraceMs?: number;
  /** Default cap per text stream, in bytes. Default 1 MiB. */
  outputBytes?: number;
  /** Cap on rich outputs (images, HTML…) per execution, in bytes. Default 32 MiB. */
  richOutputBytes?: number;
  /** Most executions waiting at once; more are refused as `failed`/`environment`. Default 1000. */
  maxQueued?: number;
}

/** Why a running execution is being stopped by runcell rather than by its own code. */
type StopReason = "timeout" | "cancel";

class Job {
  readonly record: Execution;
  readonly collector: OutputCollector;
  readonly msgId = randomUUID();
  readonly options: ExecuteOptions;
  readonly done: Promise<Execution>;
  resolve!: (execution: Execution) => void;
  seq = 0;
  replied: ExecuteReplyContent | undefined;
  idle = false;
  stopReason: StopReason | undefined;
  firstError: ExecutionError | undefined;
  startedAt = 0;
  timers: NodeJS.Timeout[] = [];
  stdinLines: string[] | undefined;
  /** The kernel announced the code (execute_input): an interrupt now reaches it. */
  codeStarted = false;
  /** An interrupt waiting for the code to start. */
  onCodeStarted: (() => void) | undefined;
  interrupted = false;
  /** The restart that follows an interrupt the code ignores; re-armed once when the interrupt lands. */
  restartTimer: NodeJS.Timeout | undefined;
  /** The code left after the interrupt (its error or reply arrived): only the kernel's wrap-up remains. */
  interruptLanded = false;
  detachSignal: (() => void) | undefined;

  constructor(record: Execution, options: ExecuteOptions, streamBytes: number, richBytes: number) {
    this.record = record;
    this.options = options;
    this.collector = new OutputCollector({ streamBytes, richBytes });
    this.done = new Promise((resolve) => {
      this.resolve = resolve;
    });
    if (typeof options.stdin === "string") this.stdinLines = options.stdin.split("\n");
  }

  emit(event: ExecutionEventInit): void {
    const handler = this.options.onEvent;
    if (!handler) return;
    try {
      handler({ ...event, seq: ++this.seq, execution_id: this.record.id } as ExecutionEvent);
    } catch {
      // a caller's handler must not break the executor
    }
  }
}

function callSafely<T>(fn: ((value: T) => void) | undefined, value: T): void {
  if (!fn) return;
  try {
    fn(value);
  } catch {
    // a caller's callback must not break the executor
  }
}

/**
 * Runs code on one kernel, one execution at a time in FIFO order, and turns the protocol
 * traffic into Execution records. An execution is complete only when both its
 * `execute_reply` and its iopub `idle` have arrived. Never rejects for failures of the code or
 * the kernel: those end the record as `failed`, `timed_out` or `cancelled`.
 */
export class KernelExecutor {
  readonly kernel: Kernel;
  readonly #options: Required<KernelExecutorOptions>;
  readonly #queue: Job[] = [];
  #current: Job | undefined;
  #disposed = false;
  readonly #unsubscribe: Array<() => void> = [];
  /** The kernel went through a restart (or death) and has not been idle since. */
  #replaced = false;
  readonly #restartListeners = new Set<() => void>();

  constructor(kernel: Kernel, options: KernelExecutorOptions = {}) {
    this.kernel = kernel;
    this.#options = {
      language: options.language ?? kernel.spec.language,
      interruptGraceMs: options.interruptGraceMs ?? 5000,
      outputBytes: options.outputBytes ?? 1024 * 1024,
      richOutputBytes: options.richOutputBytes ?? 32 * 1024 * 1024,
      maxQueued: options.maxQueued ?? 1000,
    };
    this.#unsubscribe.push(
      kernel.onMessage((message) => this.#onMessage(message)),
      kernel.onStatus((status, death) => this.#onKernelStatus(status, death)),
      kernel.onReject((rejected) => this.#onReject(rejected)),
    );
  }

  /**
   * Called when the kernel is back after a restart or a death, before anything queued runs:
   * code submitted from the listener with `first: true` runs ahead of the queue.
   */
  onRestarted(listener: () => void): () => void {
    this.#restartListeners.add(listener);
    return () => this.#restartListeners.delete(listener);
  }

  /** Executions waiting behind the running one. */
  get queueDepth(): number {
    return this.#queue.length;
  }

  /** The id of the running execution, if any. */
  get runningId(): string | undefined {
    return this.#current?.record.id;
  }

  /** Queues `code` and resolves with its finished Execution record. */
  execute(code: string, options: ExecuteOptions = {}): Promise<Execution> {
    return this.submit(code, options).done;
  }

  /**
   * Queues `code` and returns its live record at once (it changes as the execution runs; its
   * `id` is final) with the promise of the finished one.
   */
  submit(code: string, options: ExecuteOptions = {}): { execution: Execution; done: Promise<Execution> } {
    const record = newExecution({
      language: this.#options.language,
      code,
      sessionId: options.sessionId,
      blockId: options.blockId,
      limits: {
        time_ms: options.timeoutMs ?? null,
        memory_bytes: null,
        pids: null,
        output_bytes: options.outputBytes ?? this.#options.outputBytes,
        network: null,
      },
    });
    const job = new Job(
      record,
      options,
      options.outputBytes ?? this.#options.outputBytes,
      this.#options.richOutputBytes,
    );
    job.emit({ type: "status", status: "queued" });
    if (this.#disposed) {
      this.#finish(job, "cancelled", {
        name: "Cancelled",
        value: "the executor was disposed",
        category: "cancelled",
      });
      return { execution: record, done: job.done };
    }
    if (this.kernel.status === "dead") {
      this.#finish(
        job,
        "failed",
        this.#deathError(this.kernel.death, "the kernel is dead; restart it first"),
      );
      return { execution: record, done: job.done };
    }
    if (this.#queue.length >= this.#options.maxQueued) {
      this.#finish(job, "failed", {
        name: "QueueFull",
        value: `${this.#queue.length} executions are already waiting on this kernel; retry later`,
        category: "environment",
      });
      return { execution: record, done: job.done };
    }
    if (options.signal) {
      const signal = options.signal;
      const onAbort = () => this.#cancel(job);
      if (signal.aborted) {
        this.#finish(job, "cancelled", {
          name: "Cancelled",
          value: "cancelled before it started",
          category: "cancelled",
        });
        return { execution: record, done: job.done };
      }
      signal.addEventListener("abort", onAbort, { once: true });
      job.detachSignal = () => signal.removeEventListener("abort", onAbort);
    }
    if (options.first) this.#queue.unshift(job);
    else this.#queue.push(job);
    this.#pump();
    return { execution: record, done: job.done };
  }

  /** Cancels everything queued and running (running ones are interrupted) and detaches from the kernel. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const job of this.#queue.splice(0)) {
      this.#finish(job, "cancelled", {
        name: "Cancelled",
        value: "the executor was disposed",
        category: "cancelled",
      });
    }
    const current = this.#current;
    if (current) {
      this.#finish(current, "cancelled", {
        name: "Cancelled",
        value: "the executor was disposed",
        category: "cancelled",
      });
    }
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
  }

  #pump(): void {
    if (this.#current || this.#disposed) return;
    const status: KernelStatus = this.kernel.status;
    if (status !== "idle" && status !== "busy") return; // resumed by #onKernelStatus
    const job = this.#queue.shift();
    if (!job) return;
    this.#current = job;
    void this.#start(job);
  }

  async #start(job: Job): Promise<void> {
    const { record, options } = job;
    job.startedAt = performance.now();
    record.started_at = new Date().toISOString();
    record.status = "running";
    job.emit({ type: "status", status: "running" });
    const content: ExecuteRequestContent = {
      code: record.code,
      silent: false,
      store_history: options.storeHistory ?? true,
      user_expressions: {},
      allow_stdin: options.stdin !== undefined,
      // The queue lives here, so the kernel never holds more than one request to abort.
      stop_on_error: false,
    };
    if (options.timeoutMs !== undefined) {
      job.timers.push(setTimeout(() => this.#stopRunning(job, "timeout"), options.timeoutMs));
    }
    try {
      await this.kernel.send("shell", "execute_request", content, { msgId: job.msgId });
    } catch (error) {
      if (this.#current === job) {
        this.#finish(job, "failed", {
          name: "KernelUnavailable",
          value: (error as Error).message,
          category: this.kernel.status === "dead" ? "kernel_died" : "environment",
        });
      }
    }
  }

  #onMessage(message: JupyterMessage): void {
    const job = this.#current;
    if (!job || message.parent_header.msg_id !== job.msgId) return;
    const type = message.header.msg_type;
    if (message.channel === "shell") {
      if (type === "execute_reply") {
        job.replied = message.content as unknown as ExecuteReplyContent;
        const count = job.replied.execution_count;
        if (typeof count === "number") job.record.execution_count = count;
        this.#noteInterruptLanded(job);
        this.#maybeComplete(job);
      }
      return;
    }
    if (message.channel === "stdin") {
      if (type === "input_request")
        void this.#answerInput(job, message.content as unknown as InputRequestContent);
      return;
    }
    if (message.channel !== "iopub") return;
    switch (type) {
      case "status":
        if ((message.content as unknown as StatusContent).execution_state === "idle") {
          job.idle = true;
          this.#maybeComplete(job);
        }
        return;
      case "execute_input": {
        const count = (message.content as { execution_count?: unknown }).execution_count;
        if (typeof count === "number") job.record.execution_count = count;
        job.codeStarted = true;
        job.onCodeStarted?.();
        job.onCodeStarted = undefined;
        return;
      }
      case "stream": {
        const { name, text } = message.content as unknown as StreamContent;
        if ((name !== "stdout" && name !== "stderr") || typeof text !== "string") return;
        job.collector.addStream(name, text);
        callSafely(name === "stdout" ? job.options.onStdout : job.options.onStderr, text);
        job.emit({ type: "output", output: { type: "stream", name, text } });
        return;
      }
      case "execute_result": {
        const content = message.content as unknown as ExecuteResultContent;
        if (!isBundle(content.data)) return;
        const output = job.collector.addRich({
          type: "result",
          execution_count: typeof content.execution_count === "number" ? content.execution_count : null,
          data: content.data,
          metadata: content.metadata ?? {},
        });
        if (output.type === "result") callSafely(job.options.onResult, output);
        job.emit({ type: "output", output });
        return;
      }
      case "display_data": {
        const content = message.content as unknown as DisplayDataContent;
        if (!isBundle(content.data)) return;
        const display: DisplayOutput = {
          type: "display",
          data: content.data,
          metadata: content.metadata ?? {},
        };
        const displayId = content.transient?.display_id;
        if (typeof displayId === "string") display.display_id = displayId;
        const output = job.collector.addRich(display);
        if (output.type === "display") callSafely(job.options.onDisplay, output);
        job.emit({ type: "output", output });
        return;
      }
      case "update_display_data": {
        const content = message.content as unknown as DisplayDataContent;
        const displayId = content.transient?.display_id;
        if (typeof displayId !== "string" || !isBundle(content.data)) return;
        const updated = job.collector.updateDisplay(displayId, content.data, content.metadata ?? {});
        if (updated) job.emit({ type: "update_display", display_id: displayId, output: { ...updated } });
        return;
      }
      case "clear_output":
        job.collector.clear(Boolean((message.content as unknown as ClearOutputContent).wait));
        job.emit({ type: "clear_output" });
        return;
      case "error": {
        const content = message.content as unknown as ErrorContent;
        const output: Output = {
          type: "error",
          name: String(content.ename ?? "Error"),
          value: String(content.evalue ?? ""),
          traceback: Array.isArray(content.traceback) ? content.traceback.map(String) : [],
        };
        job.collector.addRich(output);
        const error: ExecutionError = {
          name: output.name,
          value: output.value,
          traceback: output.traceback.map(stripAnsi),
          category: categorizeException(output.name),
        };
        job.firstError ??= error;
        this.#noteInterruptLanded(job);
        callSafely(job.options.onError, error);
        job.emit({ type: "output", output });
        return;
      }
      default:
        return; // unknown or uninteresting types are ignored, as the protocol asks of clients
    }
  }

  /** An output too large for the wire limit is replaced by an error output saying so. */
  #onReject(rejected: RejectedMessage): void {
    const job = this.#current;
    if (rejected.reason !== "too_large" || !job || rejected.parentMsgId !== job.msgId) return;
    const bytes = rejected.bytes ?? 0;
    const output = job.collector.addDropped(
      bytes,
      "OutputTooLarge",
      `a ${rejected.msgType ?? "message"} of ${bytes} bytes from the kernel was dropped: it is over the ` +
        "kernel message size limit (maxMessageBytes); write large data to a file instead",
    );
    job.emit({ type: "output", output });
  }

  async #answerInput(job: Job, request: InputRequestContent): Promise<void> {
    const source = job.options.stdin;
    let value: string;
    try {
      if (typeof source === "function")
        value = await source(String(request.prompt ?? ""), Boolean(request.password));
      else value = job.stdinLines?.shift() ?? "";
    } catch {
      // A failing answer function is answered with an empty line rather than a hung input().
      value = "";
    }
    if (this.#current !== job) return;
    await this.kernel
      .send(
        "stdin",
        "input_reply",
        { value },
        { parentHeader: { msg_id: job.msgId, msg_type: "execute_request" } },
      )
      .catch(() => undefined);
  }

  #maybeComplete(job: Job): void {
    if (!job.replied || !job.idle || this.#current !== job) return;
    const reply = job.replied;
    if (job.stopReason === "timeout") {
      this.#finish(job, "timed_out", this.#timeoutError(job, false), "time");
    } else if (job.stopReason === "cancel") {
      this.#finish(job, "cancelled", this.#cancelError(job, false));
    } else if (reply.status === "ok") {
      this.#finish(job, "completed", null);
    } else if (reply.status === "aborted") {
      this.#finish(job, "cancelled", {
        name: "Aborted",
        value: "the kernel aborted this execution after an earlier error",
        category: "cancelled",
      });
    } else {
      const name = String(reply.ename ?? job.firstError?.name ?? "Error");
      this.#finish(
        job,
        "failed",
        job.firstError ?? {
          name,
          value: String(reply.evalue ?? ""),
          traceback: (reply.traceback ?? []).map((line) => stripAnsi(String(line))),
          category: categorizeException(name),
        },
      );
    }
  }

  /**
   * Timeout or cancel of the running job: interrupt, then restart the kernel if it stays busy.
   * A kernel drops an interrupt that arrives before it runs the code (ipykernel installs its
   * SIGINT handler only around execution), so the interrupt waits for `execute_input`, which is
   * sent once the handler is in place; a kernel that never announces the code is interrupted
   * after the grace period anyway. The grace period before a restart starts at the interrupt
   * (and once more when the interrupt is seen to land, see #noteInterruptLanded).
   */
  #stopRunning(job: Job, reason: StopReason): void {
    if (this.#current !== job || job.stopReason) return;
    job.stopReason = reason;
    const graceMs = this.#options.interruptGraceMs;
    const interrupt = () => {
      if (this.#current !== job || job.interrupted) return;
      job.interrupted = true;
      this.kernel.interrupt().catch(() => undefined);
      this.#armRestart(job);
    };
    if (job.codeStarted) interrupt();
    else {
      job.onCodeStarted = interrupt;
      job.timers.push(setTimeout(interrupt, graceMs));
    }
  }

  /** Restarts the kernel if `job` is still running after the grace period. */
  #armRestart(job: Job): void {
    if (job.restartTimer) clearTimeout(job.restartTimer);
    job.restartTimer = setTimeout(() => {
      if (this.#current !== job) return;
      // The code ignored the interrupt. Restarting loses the kernel's state but frees it.
      this.kernel.restart({ now: true }).catch(() => undefined);
    }, this.#options.interruptGraceMs);
    job.timers.push(job.restartTimer);
  }

  /**
   * The interrupted code has left (its traceback or reply arrived). On a loaded machine the
   * kernel's wrap-up (traceback formatting, reply, idle) can outlast the grace period counted
   * from the interrupt, and a restart then would throw away state the interrupt had saved: the
   * restart is pushed back by one more grace period, once, so a hostile hook still cannot hold
   * the kernel.
   */
  #noteInterruptLanded(job: Job): void {
    if (!job.interrupted || job.interruptLanded) return;
    job.interruptLanded = true;
    this.#armRestart(job);
  }

  #cancel(job: Job): void {
    const index = this.#queue.indexOf(job);
    if (index >= 0) {
      this.#queue.splice(index, 1);
      this.#finish(job, "cancelled", {
        name: "Cancelled",
        value: "cancelled before it started",
        category: "cancelled",
      });
      return;
    }
    this.#stopRunning(job, "cancel");
  }

  #onKernelStatus(status: KernelStatus, death: KernelDeath | undefined): void {
    const job = this.#current;
    if (status === "restarting" || status === "dead") this.#replaced = true;
    if (status === "restarting" && job) {
      // The running execution's kernel is being replaced: its reply and idle will never come.
      if (job.stopReason === "timeout") this.#finish(job, "timed_out", this.#timeoutError(job, true), "time");
      else if (job.stopReason === "cancel") this.#finish(job, "cancelled", this.#cancelError(job, true));
      else
        this.#finish(job, "cancelled", {
          name: "KernelRestarted",
          value: "the kernel was restarted while this ran; its state was lost",
          category: "cancelled",
        });
    } else if (status === "dead") {
      // The limit that killed the kernel (its memory) is the one that ended this execution.
      if (job)
        this.#finish(
          job,
          "failed",
          this.#deathError(death, "it died while this execution ran"),
          death?.limit ?? null,
        );
      for (const queued of this.#queue.splice(0)) {
        this.#finish(queued, "failed", this.#deathError(death, "it died before this execution could run"));
      }
    } else if (status === "idle" || status === "busy") {
      if (this.#replaced) {
        this.#replaced = false;
        for (const listener of this.#restartListeners) callSafely(listener, undefined);
      }
      this.#pump();
    }
  }

  #finish(
    job: Job,
    status: ExecutionStatus,
    error: (Omit<ExecutionError, "traceback"> & { traceback?: string[] }) | null,
    limit: LimitKind | null = null,
  ): void {
    if (job.record.finished_at !== null) return;
    for (const timer of job.timers) clearTimeout(timer);
    job.detachSignal?.();
    const record = job.record;
    const collected = job.collector.snapshot();
    Object.assign(record, collected);
    record.status = status;
    record.limit = limit;
    record.error = error ? { traceback: [], ...error } : null;
    record.finished_at = new Date().toISOString();
    record.duration_ms = job.startedAt ? round(performance.now() - job.startedAt) : 0;
    job.emit({ type: "status", status });
    job.emit({ type: "done", execution: record });
    job.resolve(record);
    const failed = status !== "completed";
    if (this.#current === job) {
      this.#current = undefined;
      if (failed && (job.options.stopOnError ?? true)) this.#abortQueued(record);
      this.#pump();
    }
  }

  #abortQueued(failed: Execution): void {
    for (const queued of this.#queue.splice(0)) {
      this.#finish(queued, "cancelled", {
        name: "Aborted",
        value:
          `not run: execution ${failed.id} before it ended ${failed.status}` +
          (failed.error ? ` (${failed.error.name})` : ""),
        category: "cancelled",
      });
    }
  }

  #timeoutError(job: Job, restarted: boolean): ExecutionError {
    const limit = job.options.timeoutMs ?? 0;
    return {
      name: "TimeoutError",
      value: restarted
        ? `the execution exceeded its ${limit} ms time limit and ignored the interrupt; the kernel was restarted and its state lost`
        : `the execution exceeded its ${limit} ms time limit and was interrupted; the kernel keeps its state`,
      traceback: job.firstError?.traceback ?? [],
      category: "timeout" satisfies ErrorCategory,
    };
  }

  #cancelError(job: Job, restarted: boolean): ExecutionError {
    return {
      name: "Cancelled",
      value: restarted
        ? "cancelled; the code ignored the interrupt, so the kernel was restarted and its state lost"
        : "cancelled: the kernel was interrupted",
      traceback: job.firstError?.traceback ?? [],
      category: "cancelled",
    };
  }

  #deathError(death: KernelDeath | undefined, context: string): ExecutionError {
    const what = death ? describeDeath(death) : "the kernel died";
    const stderr = death?.stderr.trim();
    return {
      name: "KernelDied",
      value: `${what}; ${context}. The kernel's state is lost.`,
      traceback: stderr ? stderr.split("\n").slice(-20) : [],
      category: "kernel_died",
    };
  }
}

function isBundle(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
