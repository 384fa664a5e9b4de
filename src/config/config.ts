import { tmpdir } from "node:os";
import { join } from "node:path";
import { jupyterDataPaths } from "../kernels/kernelspec.js";

/** Host variables a kernel may see; everything else in runcell's environment stays out. */
export const KERNEL_ENV_ALLOWLIST = ["PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ"] as const;

/**
 * Over a confined kernel's environment: its writable state lives in the sandbox's private /tmp,
 * since its workspace may be read-only.
 */
export const SANDBOXED_KERNEL_ENV: Readonly<Record<string, string>> = Object.freeze({
  PATH: "/usr/local/bin:/usr/bin:/bin",
  HOME: "/tmp",
  IPYTHONDIR: "/tmp/.ipython",
  MPLCONFIGDIR: "/tmp/.matplotlib",
});

/** Reads a positive integer variable, or undefined when unset; throws naming the variable when invalid. */
function positiveInt(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  max: number,
): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0 || value > max) {
    throw new Error(
      `invalid environment variable ${name}=${JSON.stringify(raw)}: expected a whole number from 1 to ${max}`,
    );
  }
  return value;
}

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

/**
 * Reads and validates the environment once; no other module reads `process.env`. Checked by
 * hand rather than with a schema library: this runs on every CLI start, before the kernel is
 * spawned, and a schema library's import would delay that start by ~80 ms.
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>> = process.env): RuncellConfig {
  const kernelStartTimeoutMs = positiveInt(env, "RUNCELL_KERNEL_START_TIMEOUT_MS", 600_000) ?? 60_000;
  const kernelEnv: Record<string, string> = {};
  for (const name of KERNEL_ENV_ALLOWLIST) {
    const value = env[name];
    if (value !== undefined) kernelEnv[name] = value;
  }
  kernelEnv.PATH ??= "/usr/local/bin:/usr/bin:/bin";
  // Silences debugpy's frozen-modules warning on every kernel start.
  kernelEnv.PYDEVD_DISABLE_FILE_VALIDATION = "1";
  const uid = process.getuid?.() ?? 0;
  const runtimeDir = env.RUNCELL_RUNTIME_DIR || join(env.XDG_RUNTIME_DIR || tmpdir(), `runcell-${uid}`);
  return Object.freeze({
    jupyterPaths: Object.freeze(jupyterDataPaths(env)),
    runtimeDir,
    kernelEnv: Object.freeze(kernelEnv),
    kernelStartTimeoutMs,
  });
}
