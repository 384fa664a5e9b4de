/**
 * The Execution record: one shape for the CLI's --json, HTTP, MCP, the SDK and the store.
 * Field names are snake_case exactly as on the wire so no mapping layer exists.
 */

/** Lifecycle of an execution. Terminal states: completed, failed, timed_out, cancelled, rejected. */
export type ExecutionStatus =
  | "queued"
  | "awaiting_approval"
  | "rejected"
  | "running"
  | "completed"
  | "failed"
  | "timed_out"
  | "cancelled";

/** Why an execution failed, as a caller (or a repair loop) would branch on it. */
export type ErrorCategory =
  | "syntax"
  | "import"
  | "runtime"
  | "timeout"
  | "memory"
  | "output"
  | "environment"
  | "policy"
  | "kernel_died"
  | "cancelled";

/** Which enforced limit ended a run. */
export type LimitKind = "time" | "memory" | "output" | "pids" | "file_size";

/** A MIME bundle as Jupyter sends it: text types as strings, JSON types as values. */
export type MimeBundle = Record<string, unknown>;

export interface StreamOutput {
  type: "stream";
  name: "stdout" | "stderr";
  text: string;
}

export interface ResultOutput {
  type: "result";
  execution_count: number | null;
  data: MimeBundle;
  metadata: Record<string, unknown>;
}

export interface DisplayOutput {
  type: "display";
  data: MimeBundle;
  metadata: Record<string, unknown>;
  /** Set when the kernel gave the display an id (so `update_display_data` can replace it). */
  display_id?: string;
}

export interface ErrorOutput {
  type: "error";
  name: string;
  value: string;
  /** As the kernel sent it (ANSI colour codes included), so notebooks render it faithfully. */
  traceback: string[];
}

export type Output = StreamOutput | ResultOutput | DisplayOutput | ErrorOutput;

/** `error` on the record: the failure a caller branches on. Traceback lines are free of ANSI codes. */
export interface ExecutionError {
  name: string;
  value: string;
  traceback: string[];
  category: ErrorCategory;
}

/** The limits actually enforced for a run (after clamping to ceilings and host support). */
export interface EnforcedLimits {
  time_ms: number | null;
  memory_bytes: number | null;
  pids: number | null;
  output_bytes: number | null;
  network: boolean | null;
}

export interface Execution {
  id: string;
  session_id: string | null;
  block_id: string | null;
  language: string;
  code: string;
  status: ExecutionStatus;
  stdout: string;
  stderr: string;
  outputs: Output[];
  error: ExecutionError | null;
  /** The process exit code for one-shot runs; null for kernel executions. */
  exit_code: number | null;
  signal: string | null;
  limit: LimitKind | null;
  execution_count: number | null;
  /** True when an output cap dropped bytes; `dropped_bytes` says how many. */
  truncated: boolean;
  stdout_bytes: number;
  stderr_bytes: number;
  dropped_bytes: number;
  cpu_ms: number | null;
  peak_memory_bytes: number | null;
  limits: EnforcedLimits;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
}

/** Statuses after which an execution never changes again. */
export const TERMINAL_STATUSES: ReadonlySet<ExecutionStatus> = new Set([
  "completed",
  "failed",
  "timed_out",
  "cancelled",
  "rejected",
]);

/** True when the execution will not change any more. */
export function isTerminal(status: ExecutionStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

/**
 * Live events of one execution, in order. `seq` is per execution and starts at 1, so a client
 * that reconnects with the last seq it saw can be sent exactly what it missed.
 */
export type ExecutionEvent =
  | { seq: number; execution_id: string; type: "status"; status: ExecutionStatus }
  | { seq: number; execution_id: string; type: "output"; output: Output }
  | { seq: number; execution_id: string; type: "clear_output" }
  | { seq: number; execution_id: string; type: "update_display"; display_id: string; output: DisplayOutput }
  | { seq: number; execution_id: string; type: "done"; execution: Execution };

/** Distributes `Omit` over a union so each event variant keeps its own fields. */
type DistributiveOmit<T, K extends keyof never> = T extends unknown ? Omit<T, K> : never;

/** An event before the queue stamps it with `seq` and `execution_id`. */
export type ExecutionEventInit = DistributiveOmit<ExecutionEvent, "seq" | "execution_id">;
