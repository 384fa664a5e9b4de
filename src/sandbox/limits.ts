import { InvalidArgumentError } from "../errors.js";

/** Resource limits of one confined run or kernel. Units are in the names. */
export interface ResourceLimits {
  /** Wall-clock time, enforced by runcell's timer. */
  timeMs: number;
  /** CPU time across all threads and processes (RLIMIT_CPU per process, cgroup accounting overall). */
  cpuMs: number;
  /** Memory of the whole process tree (cgroup), falling back to RLIMIT_AS per process. */
  memoryBytes: number;
  /** Processes and threads of the whole tree (pids cgroup), falling back to RLIMIT_NPROC. */
  pids: number;
  /** Bytes per output stream (stdout, stderr) before the run is stopped. */
  outputBytes: number;
  /** Largest file the run may write (RLIMIT_FSIZE; SIGXFSZ, exit 153, past it). */
  fileBytes: number;
  /** Open file descriptors per process (RLIMIT_NOFILE). */
  openFiles: number;
  /** Size of each private tmpfs (/tmp, and /workspace unless a host directory is given). */
  tmpBytes: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** What a run gets when it asks for nothing. */
export const DEFAULT_LIMITS: Readonly<ResourceLimits> = Object.freeze({
  timeMs: 30_000,
  cpuMs: 30_000,
  memoryBytes: 512 * MiB,
  pids: 64,
  outputBytes: 1 * MiB,
  fileBytes: 16 * MiB,
  openFiles: 256,
  tmpBytes: 64 * MiB,
});

/** The most a run may ask for: a request may raise a limit up to here, never to "unlimited". */
export const DEFAULT_CEILINGS: Readonly<ResourceLimits> = Object.freeze({
  timeMs: 600_000,
  cpuMs: 600_000,
  memoryBytes: 4 * GiB,
  pids: 1024,
  outputBytes: 64 * MiB,
  fileBytes: 1 * GiB,
  openFiles: 4096,
  tmpBytes: 1 * GiB,
});

/** The smallest sane value of each limit (a 0 ms or 0-byte limit is a mistake, not a request). */
const FLOORS: Readonly<ResourceLimits> = Object.freeze({
  timeMs: 1,
  cpuMs: 1,
  memoryBytes: 16 * MiB,
  pids: 1,
  outputBytes: 1,
  fileBytes: 1,
  openFiles: 16,
  tmpBytes: 1 * MiB,
});

/**
 * Applies a request over the defaults and checks it against the ceilings. Throws
 * InvalidArgumentError naming the limit and its allowed range for anything not a whole number
 * within [floor, ceiling] (negative, zero, NaN, infinite, above the ceiling).
 */
export function resolveLimits(
  requested: Partial<ResourceLimits> = {},
  ceilings: Readonly<ResourceLimits> = DEFAULT_CEILINGS,
  defaults: Readonly<ResourceLimits> = DEFAULT_LIMITS,
): ResourceLimits {
  const limits = { ...defaults };
  for (const key of Object.keys(defaults) as Array<keyof ResourceLimits>) {
    const value = requested[key];
    if (value === undefined) {
      limits[key] = Math.min(defaults[key], ceilings[key]);
      continue;
    }
    if (typeof value !== "number" || !Number.isFinite(value) || !Number.isInteger(value)) {
      // String(), not JSON.stringify(): the latter shows NaN and Infinity as "null".
      throw new InvalidArgumentError(
        "INVALID_LIMIT",
        `${key} must be a whole number between ${FLOORS[key]} and ${ceilings[key]} (the server's ceiling), not ${typeof value === "number" ? String(value) : JSON.stringify(value)}`,
      );
    }
    if (value < FLOORS[key] || value > ceilings[key]) {
      throw new InvalidArgumentError(
        "INVALID_LIMIT",
        `${key} must be between ${FLOORS[key]} and ${ceilings[key]} (the server's ceiling), not ${value}`,
      );
    }
    limits[key] = value;
  }
  return limits;
}
