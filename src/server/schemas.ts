import { z } from "zod";

/**
 * Request and response schemas of the HTTP API, in zod: requests are validated with them at the
 * edge, and the OpenAPI document is generated from them. Responses are documented, not
 * re-validated (they are built from typed records).
 */

const envSchema = z
  .record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "environment variable names are letters, digits and _"),
    z.string(),
  )
  .refine((env) => Object.keys(env).length <= 256, "at most 256 environment variables")
  .describe("variables for the program");

const positive = (description: string) => z.number().int().positive().describe(description);

export const ErrorResponse = z
  .object({
    error: z.object({
      code: z.string().describe("stable upper-case code, e.g. SESSION_NOT_FOUND"),
      message: z.string().describe("what went wrong and what to do"),
    }),
  })
  .meta({ id: "Error" });

const MimeBundle = z.record(z.string(), z.unknown());

export const OutputSchema = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("stream"), name: z.enum(["stdout", "stderr"]), text: z.string() }),
    z.object({
      type: z.literal("result"),
      execution_count: z.number().int().nullable(),
      data: MimeBundle,
      metadata: z.record(z.string(), z.unknown()),
    }),
    z.object({
      type: z.literal("display"),
      data: MimeBundle,
      metadata: z.record(z.string(), z.unknown()),
      display_id: z.string().optional(),
    }),
    z.object({
      type: z.literal("error"),
      name: z.string(),
      value: z.string(),
      traceback: z.array(z.string()),
    }),
  ])
  .meta({ id: "Output" });

export const ExecutionSchema = z
  .object({
    id: z.string(),
    session_id: z.string().nullable(),
    block_id: z.string().nullable(),
    language: z.string(),
    code: z.string(),
    status: z.enum([
      "queued",
      "awaiting_approval",
      "rejected",
      "running",
      "completed",
      "failed",
      "timed_out",
      "cancelled",
    ]),
    stdout: z.string(),
    stderr: z.string(),
    outputs: z.array(OutputSchema),
    error: z
      .object({
        name: z.string(),
        value: z.string(),
        traceback: z.array(z.string()),
        category: z.enum([
          "syntax",
          "import",
          "runtime",
          "timeout",
          "memory",
          "output",
          "environment",
          "policy",
          "kernel_died",
          "cancelled",
        ]),
      })
      .nullable(),
    exit_code: z.number().int().nullable().describe("process exit code of a one-shot run; null in sessions"),
    signal: z.string().nullable(),
    limit: z
      .enum(["time", "memory", "output", "pids", "file_size"])
      .nullable()
      .describe("the limit that ended the run"),
    execution_count: z.number().int().nullable(),
    truncated: z.boolean(),
    stdout_bytes: z.number().int(),
    stderr_bytes: z.number().int(),
    dropped_bytes: z.number().int(),
    cpu_ms: z.number().nullable(),
    peak_memory_bytes: z.number().nullable(),
    limits: z.object({
      time_ms: z.number().nullable(),
      memory_bytes: z.number().nullable(),
      pids: z.number().nullable(),
      output_bytes: z.number().nullable(),
      network: z.boolean().nullable(),
    }),
    created_at: z.string(),
    started_at: z.string().nullable(),
    finished_at: z.string().nullable(),
    duration_ms: z.number().nullable(),
  })
  .meta({ id: "Execution" });

export const ExecutionEventSchema = z
  .object({
    seq: z.number().int(),
    execution_id: z.string(),
    type: z.enum(["status", "output", "clear_output", "update_display", "done"]),
    status: z.string().optional(),
    output: OutputSchema.optional(),
    display_id: z.string().optional(),
    execution: ExecutionSchema.optional(),
  })
  .meta({ id: "ExecutionEvent" });

export const SessionSchema = z
  .object({
    id: z.string(),
    kernel: z.string(),
    language: z.string(),
    mode: z.enum(["read_only", "write_access"]),
    status: z.enum(["starting", "idle", "busy", "restarting", "ended"]),
    network: z.boolean(),
    limits: ExecutionSchema.shape.limits,
    startup_code: z.string(),
    env_keys: z.array(z.string()),
    from_pool: z.boolean(),
    kernel_id: z.string().nullable(),
    restarts: z.number().int(),
    state_lost_at: z.string().nullable(),
    last_restart_reason: z.enum(["restart", "died", "timeout"]).nullable(),
    queue_depth: z.number().int(),
    execution_count: z.number().int(),
    idle_timeout_ms: z.number().int(),
    created_at: z.string(),
    last_activity_at: z.string(),
    ended_at: z.string().nullable(),
    end_reason: z.string().nullable(),
  })
  .meta({ id: "Session" });

export const CreateSessionBody = z
  .strictObject({
    kernel: z
      .string()
      .min(1)
      .max(256)
      .optional()
      .describe("kernelspec name (GET /api/v1/kernelspecs); default python3"),
    mode: z
      .enum(["read_only", "write_access"])
      .optional()
      .describe("read_only: the workspace is read-only and there is no network; default write_access"),
    startup_code: z.string().optional().describe("run once the kernel starts (and after every restart)"),
    env: envSchema.optional(),
    network: z.boolean().optional().describe("network access (write_access only); default false"),
    memory_bytes: positive("memory of the kernel's whole process tree").optional(),
    pids: positive("processes and threads of the kernel").optional(),
    timeout_ms: positive("default time limit of each execution").optional(),
    output_bytes: positive("cap per output stream of each execution").optional(),
    idle_timeout_ms: z
      .number()
      .int()
      .min(1000)
      .max(30 * 86_400_000)
      .optional()
      .describe("end the session after this long without an execution"),
  })
  .meta({ id: "CreateSession" });

export const ExecuteBody = z
  .strictObject({
    code: z.string().describe("the code to run"),
    timeout_ms: positive(
      "time limit; past it the execution is interrupted and the kernel keeps its state",
    ).optional(),
    stdin: z.string().optional().describe("lines answered to input(), in order"),
    cancel_on_disconnect: z
      .boolean()
      .optional()
      .describe(
        "cancel (interrupt) the execution if the client leaves before it ends; default false: it runs on",
      ),
  })
  .meta({ id: "SessionExecute" });

export const OneShotBody = z
  .strictObject({
    code: z.string(),
    language: z.string().optional().describe("python (default), bash or node"),
    timeout_ms: positive("wall-clock time limit").optional(),
    memory_bytes: positive("memory of the run's process tree").optional(),
    pids: positive("processes and threads").optional(),
    output_bytes: positive("cap per output stream").optional(),
    network: z.boolean().optional().describe("network access; default false"),
    files: z
      .array(
        z.strictObject({
          path: z.string().min(1).max(4096).describe("relative path in /workspace"),
          content: z.string(),
          encoding: z.enum(["utf8", "base64"]).optional(),
        }),
      )
      .max(1000)
      .optional()
      .describe("files placed in the run's fresh workspace"),
    env: envSchema.optional(),
    profile: z
      .string()
      .optional()
      .describe("warm interpreter profile: default, or pandas (numpy and pandas imported)"),
  })
  .meta({ id: "OneShotExecute" });

export const IdParams = z.object({ id: z.string().min(1).max(128) });
export const KernelIdParams = z.object({ kernel_id: z.string().min(1).max(128) });
export const EventsQuery = z.object({
  after: z.coerce.number().int().min(0).optional().describe("return events with seq greater than this"),
});
export const WsQuery = z.object({
  after: z.coerce
    .number()
    .int()
    .min(0)
    .optional()
    .describe("replay session events with seq greater than this"),
  token: z.string().optional(),
});

export const ProjectSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    kernel: z.string(),
    metadata: z.record(z.string(), z.unknown()),
    session_id: z.string().nullable().describe("the session running the project's kernel, when one runs"),
    block_count: z.number().int(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .meta({ id: "Project" });

export const BlockSchema = z
  .object({
    id: z.string(),
    project_id: z.string(),
    position: z.number().int().describe("0-based index in the project"),
    cell_type: z.enum(["code", "markdown", "raw"]),
    language: z.string(),
    source: z.string(),
    status: z.enum(["IDLE", "RUNNING", "COMPLETED", "FAILED", "STALE"]),
    status_reason: z.string().nullable(),
    defines: z.array(z.string()).describe("names the block binds at module level"),
    uses: z.array(z.string()).describe("names the block reads that come from other blocks"),
    analysis_error: z.string().nullable(),
    last_execution_id: z.string().nullable(),
    execution_count: z.number().int().nullable(),
    metadata: z.record(z.string(), z.unknown()),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .meta({ id: "Block" });

export const BlockRunResultSchema = z
  .object({
    block_id: z.string(),
    status: z.enum(["completed", "failed", "not_run"]),
    execution: ExecutionSchema.nullable(),
    rebuilt: z
      .array(z.object({ block_id: z.string(), execution_id: z.string(), status: z.string() }))
      .describe("upstream blocks re-run first because the project's kernel was new or had lost its state"),
    reason: z.string().optional(),
  })
  .meta({ id: "BlockRunResult" });

const projectName = z.string().min(1).max(256);
const cellType = z.enum(["code", "markdown", "raw"]);
const position = z.number().int().min(0).max(1_000_000);
const timeout = z.number().int().positive().optional().describe("time limit per block");

export const CreateProjectBody = z
  .strictObject({ name: projectName, kernel: z.string().min(1).max(256).optional() })
  .meta({ id: "CreateProject" });
export const UpdateProjectBody = z.strictObject({
  name: projectName.optional(),
  kernel: z.string().min(1).max(256).optional(),
});
export const CreateBlockBody = z
  .strictObject({
    source: z.string().optional(),
    language: z.string().optional().describe("python (the project's kernel)"),
    cell_type: cellType.optional(),
    position: position.optional().describe("insert here (0 = first); default: at the end"),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .meta({ id: "CreateBlock" });
export const UpdateBlockBody = z.strictObject({
  source: z.string().optional(),
  position: position.optional().describe("move the block here"),
  cell_type: cellType.optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});
export const ExecuteBlockBody = z.strictObject({ timeout_ms: timeout });
export const ExecuteMultipleBody = z
  .strictObject({
    block_ids: z.array(z.string().min(1).max(128)).min(1).max(1000),
    continue_on_error: z.boolean().optional().describe("run the rest after a failure; default false"),
    timeout_ms: timeout,
  })
  .meta({ id: "ExecuteMultiple" });
export const RunStaleBody = z.strictObject({
  continue_on_error: z.boolean().optional(),
  timeout_ms: timeout,
});
export const ContextQuery = z.object({
  format: z.enum(["markdown", "json"]).optional(),
  max_chars: z.coerce.number().int().min(200).max(2_000_000).optional(),
});
export const ImportQuery = z.object({ name: projectName.optional() });
export const HistoryQuery = z.object({ limit: z.coerce.number().int().min(1).max(1000).optional() });
