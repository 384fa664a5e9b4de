import type { EnforcedLimits, ExecutionEvent } from "../execution/types.js";
import type { SessionEndReason } from "../store/types.js";

/** `read_only`: the workspace is mounted read-only and there is no network, whatever else is asked. */
export type SessionMode = "read_only" | "write_access";

/** A session's state as its owner sees it; `ended` is final. */
export type SessionStatus = "starting" | "idle" | "busy" | "restarting" | "ended";

/** Why a session's kernel was replaced (its state lost). */
export type RestartReason = "restart" | "died" | "timeout";

/** A session as the API shows it (snake_case, as on the wire). */
export interface SessionInfo {
  id: string;
  kernel: string;
  language: string;
  mode: SessionMode;
  status: SessionStatus;
  network: boolean;
  limits: EnforcedLimits;
  startup_code: string;
  /** Names of the variables the session was given (values are not shown back). */
  env_keys: string[];
  /** The kernel came pre-started from the warm pool. */
  from_pool: boolean;
  kernel_id: string | null;
  /** How many times the kernel was replaced since the session started. */
  restarts: number;
  /** When the kernel's state was last lost (restart, death, a timeout that needed a restart). */
  state_lost_at: string | null;
  last_restart_reason: RestartReason | null;
  queue_depth: number;
  /** Executions submitted to the session so far. */
  execution_count: number;
  idle_timeout_ms: number;
  created_at: string;
  last_activity_at: string;
  ended_at: string | null;
  end_reason: SessionEndReason | null;
}

/**
 * One event on a session's stream, in order: `seq` is per session, starts at 1 and has no gaps,
 * so a client reconnecting with the last seq it saw is sent exactly what it missed.
 */
export type SessionEvent =
  | { seq: number; session_id: string; type: "execution"; event: ExecutionEvent }
  | {
      seq: number;
      session_id: string;
      type: "session";
      status: SessionStatus;
      reason?: RestartReason | SessionEndReason;
      state_lost?: boolean;
      message?: string;
    };

/** What a caller may ask of a new session; every field optional. */
export interface CreateSessionOptions {
  kernel?: string;
  mode?: SessionMode;
  startup_code?: string;
  env?: Record<string, string>;
  network?: boolean;
  memory_bytes?: number;
  pids?: number;
  timeout_ms?: number;
  output_bytes?: number;
  idle_timeout_ms?: number;
}
