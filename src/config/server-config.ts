import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { InvalidArgumentError } from "../errors.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const int = (description: string, value: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(value).describe(description);
// "false" and "0" mean false: z.coerce.boolean() would read any non-empty string as true.
const bool = (description: string, value: boolean) =>
  z
    .preprocess(
      (raw) => (typeof raw === "string" ? !["false", "0", "no", "off", ""].includes(raw) : raw),
      z.boolean(),
    )
    .default(value)
    .describe(description);

const poolProfile = z.strictObject({
  kernel: z.string().min(1).default("python3"),
  mode: z.enum(["read_only", "write_access"]).default("write_access"),
  startup_code: z.string().default(""),
  size: z.number().int().min(0).max(64).default(1),
});

/** One schema for every option of `runcell serve`: file, environment and flags are all checked by it. */
export const serverConfigSchema = z.strictObject({
  host: z
    .string()
    .min(1)
    .default("127.0.0.1")
    .describe("address to listen on (0.0.0.0 exposes the API to the network)"),
  port: int("TCP port to listen on; 0 picks a free one", 8000, 0, 65535),
  data_dir: z
    .string()
    .min(1)
    .optional()
    .describe("where the SQLite database and session workspaces live (default $XDG_DATA_HOME/runcell)"),
  sandbox: z
    .enum(["bwrap", "none"])
    .default("bwrap")
    .describe("bwrap confines every kernel and run; none runs them unconfined (trusted code only)"),
  log_level: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
    .default("info")
    .describe("level of the JSON logs on stdout"),
  body_limit_bytes: int("largest accepted request body", 8 * MiB, 1024, 1 * GiB),
  max_code_bytes: int("largest accepted code of one execution", 1 * MiB, 1, 64 * MiB),
  shutdown_grace_ms: int(
    "on SIGTERM, how long running executions may finish before kernels are stopped",
    5_000,
    0,
    600_000,
  ),
  limits: z
    .strictObject({
      time_ms: int("default time limit of one execution", 30_000, 1, 86_400_000),
      memory_bytes: int("default memory of a session kernel or one-shot run", 1 * GiB, 16 * MiB, 1024 * GiB),
      pids: int("default processes and threads of a session kernel or run", 256, 1, 65_536),
      output_bytes: int("default cap per output stream of one execution", 1 * MiB, 1, 1 * GiB),
      max_time_ms: int("ceiling on a requested time limit", 3_600_000, 1, 86_400_000),
      max_memory_bytes: int("ceiling on requested memory", 8 * GiB, 16 * MiB, 1024 * GiB),
      max_pids: int("ceiling on requested processes", 4096, 1, 65_536),
      max_output_bytes: int("ceiling on a requested output cap", 64 * MiB, 1, 1 * GiB),
    })
    .prefault({}),
  sessions: z
    .strictObject({
      idle_timeout_ms: int(
        "a session with no execution for this long is ended (culled)",
        3_600_000,
        1_000,
        30 * 86_400_000,
      ),
      max_per_user: int("most live sessions per user (429 past it)", 10, 0, 100_000),
      max_total: int("most live sessions on the server (503 past it)", 64, 0, 100_000),
      max_queued: int("most executions waiting on one session (429 past it)", 100, 1, 100_000),
      kernel_start_timeout_ms: int("deadline for a kernel to start", 60_000, 1_000, 600_000),
    })
    .prefault({}),
  pool: z
    .strictObject({
      size: int("kernels kept started for the default profile (python3, write_access)", 2, 0, 64),
      max_age_ms: int(
        "a pooled kernel older than this is replaced by a fresh one",
        3_600_000,
        1_000,
        30 * 86_400_000,
      ),
      health_interval_ms: int("how often pooled kernels are checked", 10_000, 100, 3_600_000),
      profiles: z
        .array(poolProfile)
        .max(32)
        .default([])
        .describe("further profiles: [{kernel, mode, startup_code, size}] (config file only)"),
    })
    .prefault({}),
  oneshot: z
    .strictObject({
      max_concurrent: int("one-shot runs at once", 8, 1, 1024),
      max_waiting: int("one-shot runs waiting for a slot (503 past it)", 256, 0, 100_000),
      warm: bool("start Python one-shot runs from warm pre-started interpreters", true),
    })
    .prefault({}),
});

/** Every option of the server, validated and frozen. */
export type ServerConfig = z.infer<typeof serverConfigSchema> & { data_dir: string };

/** One documented option: where it lives in the file, its variable, its default. */
export interface ServerOption {
  path: string;
  env: string;
  description: string;
  default: unknown;
}

type AnySchema = z.ZodType & { description?: string };

function unwrap(schema: AnySchema): AnySchema {
  let current = schema as z.ZodType;
  while (
    current instanceof z.ZodDefault ||
    current instanceof z.ZodPrefault ||
    current instanceof z.ZodOptional
  ) {
    current = (current as z.ZodDefault<z.ZodType>).unwrap();
  }
  return current;
}

/** The options, in the schema's order, with their variables and defaults (for --help and the README). */
export function serverOptions(): ServerOption[] {
  const defaults = serverConfigSchema.parse({}) as Record<string, unknown>;
  const options: ServerOption[] = [];
  for (const [key, field] of Object.entries(serverConfigSchema.shape)) {
    const inner = unwrap(field as AnySchema);
    if (inner instanceof z.ZodObject) {
      for (const [sub, subField] of Object.entries(inner.shape)) {
        options.push({
          path: `${key}.${sub}`,
          env: `RUNCELL_${key}_${sub}`.toUpperCase(),
          description: (subField as AnySchema).description ?? "",
          default: (defaults[key] as Record<string, unknown>)[sub],
        });
      }
    } else {
      options.push({
        path: key,
        env: `RUNCELL_${key}`.toUpperCase(),
        description: (field as AnySchema).description ?? "",
        default: defaults[key],
      });
    }
  }
  return options;
}

/** Default data dir: $XDG_DATA_HOME/runcell, else ~/.local/share/runcell. */
export function defaultDataDir(env: Readonly<Record<string, string | undefined>>): string {
  return join(env.XDG_DATA_HOME || join(env.HOME || homedir(), ".local", "share"), "runcell");
}

/**
 * Builds the server's configuration: defaults, then the JSON config file (`--config`, or
 * `config.json` in the data dir when present), then `RUNCELL_*` variables, then flags. Throws
 * InvalidArgumentError naming every bad option and where it came from.
 */
export function loadServerConfig(
  flags: Record<string, unknown>,
  env: Readonly<Record<string, string | undefined>> = process.env,
  configFile?: string,
): ServerConfig {
  const merged: Record<string, unknown> = {};
  const set = (path: string, value: unknown) => {
    const [head, tail] = path.split(".") as [string, string | undefined];
    if (tail === undefined) merged[head] = value;
    else merged[head] = { ...(merged[head] as object | undefined), [tail]: value };
  };
  const dataDirHint = (flags.data_dir as string | undefined) ?? env.RUNCELL_DATA_DIR ?? defaultDataDir(env);
  const file = configFile ?? env.RUNCELL_CONFIG;
  const fromFile = readConfigFile(file ?? join(dataDirHint, "config.json"), file !== undefined);
  for (const [key, value] of Object.entries(fromFile)) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [sub, subValue] of Object.entries(value)) set(`${key}.${sub}`, subValue);
    } else set(key, value);
  }
  for (const option of serverOptions()) {
    const value = env[option.env];
    if (value !== undefined && value !== "" && option.path !== "pool.profiles") set(option.path, value);
  }
  for (const [path, value] of Object.entries(flags)) if (value !== undefined) set(path, value);
  const parsed = serverConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const path = issue.path.join(".");
      const option = serverOptions().find((o) => o.path === path);
      return `${path || "config"}${option ? ` (${option.env})` : ""}: ${issue.message}`;
    });
    throw new InvalidArgumentError(
      "INVALID_CONFIG",
      `invalid server configuration:\n  ${problems.join("\n  ")}`,
    );
  }
  return Object.freeze({ ...parsed.data, data_dir: parsed.data.data_dir ?? defaultDataDir(env) });
}

function readConfigFile(path: string, required: boolean): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new InvalidArgumentError(
      "INVALID_CONFIG",
      `cannot read the config file ${path}: ${(error as Error).message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InvalidArgumentError(
      "INVALID_CONFIG",
      `${path} is not valid JSON: ${(error as Error).message}`,
    );
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) {
    throw new InvalidArgumentError("INVALID_CONFIG", `${path} must hold a JSON object of options`);
  }
  return json as Record<string, unknown>;
}
