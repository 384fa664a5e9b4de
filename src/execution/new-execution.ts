import { randomUUID } from "node:crypto";
import type { EnforcedLimits, Execution } from "./types.js";

/** A fresh `queued` Execution record with nothing run yet: the one place records are born. */
export function newExecution(fields: {
  language: string;
  code: string;
  limits: EnforcedLimits;
  sessionId?: string | null;
  blockId?: string | null;
}): Execution {
  return {
    id: randomUUID(),
    session_id: fields.sessionId ?? null,
    block_id: fields.blockId ?? null,
    language: fields.language,
    code: fields.code,
    status: "queued",
    stdout: "",
    stderr: "",
    outputs: [],
    error: null,
    exit_code: null,
    signal: null,
    limit: null,
    execution_count: null,
    truncated: false,
    stdout_bytes: 0,
    stderr_bytes: 0,
    dropped_bytes: 0,
    cpu_ms: null,
    peak_memory_bytes: null,
    limits: fields.limits,
    created_at: new Date().toISOString(),
    started_at: null,
    finished_at: null,
    duration_ms: null,
  };
}
