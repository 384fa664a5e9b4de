import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { jupyterDataPaths } from "../kernels/kernelspec.js";

/** Host variables a kernel may see; everything else in runcell's environment stays out. */
export const KERNEL_ENV_ALLOWLIST = ["PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ"] as const;

const envSchema = z.object({
  RUNCELL_RUNTIME_DIR: z.string().min(1).optional(),
  RUNCELL_KERNEL_START_TIMEOUT_MS: z.coerce.number().int().positive().max(600_000).optional(),
  XDG_RUNTIME_DIR: z.string().optional(),
});

/** Everything runcell reads from its environment, read once and frozen. */
export interface RuncellConfig {
  /** Jupyter data paths searched for kernelspecs, in priority order. */
  readonly jupyterPaths: readonly string[];
  /** Private directory for connection files. */
  readonly runtimeDir: string;
  /** The base environment of every kernel (allowlisted host variables plus runcell's own). */
  readonly kernelEnv: Readonly<Record<string, string>>;
  readonly kernelStartTimeoutMs: number;
}

/** Reads and validates the environment once; no other module reads `process.env`. */
export function loadConfig(env: Readonly<Record<string, string | undefined>> = process.env): RuncellConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`invalid environment variable ${issue.path.join(".")}: ${issue.message}`);
  }
  const kernelEnv: Record<string, string> = {};
  for (const name of KERNEL_ENV_ALLOWLIST) {
    const value = env[name];
    if (value !== undefined) kernelEnv[name] = value;
  }
  kernelEnv.PATH ??= "/usr/local/bin:/usr/bin:/bin";
  // Silences debugpy's frozen-modules warning on every kernel start.
  kernelEnv.PYDEVD_DISABLE_FILE_VALIDATION = "1";
  // ipykernel polls this pid and exits when it goes away: a second guard against orphans.
  kernelEnv.JPY_PARENT_PID = String(process.pid);
  const uid = process.getuid?.() ?? 0;
  const runtimeDir =
    parsed.data.RUNCELL_RUNTIME_DIR ?? join(parsed.data.XDG_RUNTIME_DIR || tmpdir(), `runcell-${uid}`);
  return Object.freeze({
    jupyterPaths: Object.freeze(jupyterDataPaths(env)),
    runtimeDir,
    kernelEnv: Object.freeze(kernelEnv),
    kernelStartTimeoutMs: parsed.data.RUNCELL_KERNEL_START_TIMEOUT_MS ?? 60_000,
  });
}
