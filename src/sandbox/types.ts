/**
 * How any child process of runcell is started and confined. Kernels and one-shot runs go through
 * this interface, so the kernel engine never knows which confinement is in force.
 */

/** How a process ended: an exit code, or the signal that killed it. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** Program and arguments; argv[0] is resolved with PATH only if it is not absolute. */
  argv: string[];
  /** The complete environment of the child: nothing is inherited implicitly. */
  env: Record<string, string>;
  cwd?: string;
  /** Bytes of stderr to keep for error reports (the tail is kept). Default 16 KiB. */
  stderrTailBytes?: number;
}

/** A live confined process; its owner must call `dispose()`. */
export interface SandboxProcess {
  readonly pid: number;
  /** Settles once the process has exited (never rejects). */
  readonly exited: Promise<ProcessExit>;
  /** The exit, once known; undefined while running. */
  readonly exitStatus: ProcessExit | undefined;
  /** The last bytes the process wrote to stderr (and stdout), decoded as UTF-8. */
  stderrTail(): string;
  /** Sends a signal to the whole process group (the kernel and the children it started). */
  signalGroup(signal: NodeJS.Signals): void;
  /**
   * Ends the process tree: SIGTERM, then SIGKILL after `graceMs`. Idempotent; resolves when
   * the process has exited.
   */
  dispose(graceMs?: number): Promise<void>;
}

/** A way of starting confined processes. */
export interface Sandbox {
  /** A short name shown in diagnostics, e.g. `host` or `bwrap`. */
  readonly kind: string;
  spawn(options: SpawnOptions): Promise<SandboxProcess>;
}
