import type { Readable, Writable } from "node:stream";
import type { CgroupStats } from "./cgroups-types.js";

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
  /** `tail` (default): keep the last output bytes for reports; `pipe`: expose stdout and stderr. */
  output?: "tail" | "pipe";
  /** `pipe` gives the caller the process's stdin; default: /dev/null. */
  input?: "ignore" | "pipe";
  /**
   * How to start it, overriding the process-wide choice (see setSpawnStrategy). `direct` suits
   * a long-lived process with busy stdio started rarely, such as the warm fork server: its stdio
   * are pipes (cheaper than the helper's sockets) and its one fork of runcell is paid once.
   */
  strategy?: "helper" | "direct";
  /** Host paths to make visible inside the sandbox, at `target` or else the same path (e.g. a kernel's socket dir). */
  binds?: Array<{ path: string; writable: boolean; target?: string }>;
}

/** A live confined process; its owner must call `dispose()`. */
export interface SandboxProcess {
  readonly pid: number;
  /** Settles once the process has exited (never rejects). */
  readonly exited: Promise<ProcessExit>;
  /** The exit, once known; undefined while running. */
  readonly exitStatus: ProcessExit | undefined;
  /** With `output: "pipe"`, the process's stdout and stderr; otherwise null. */
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** With `input: "pipe"`, the process's stdin; otherwise null. */
  readonly stdin: Writable | null;
  /** The last bytes the process wrote to stderr (and stdout), decoded as UTF-8. */
  stderrTail(): string;
  /** What the whole process tree used (CPU, peak memory, limit hits), where the host measures it. */
  usage(): Promise<CgroupStats | null>;
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
  /**
   * How a kernel inside can be reached: `tcp` on loopback when the sandbox shares the host's
   * network, `ipc` (Unix sockets in a bound directory) when it has a network namespace of its own.
   */
  readonly kernelTransport: "tcp" | "ipc";
  /**
   * Whether `signalGroup` reaches the confined program itself. bubblewrap does not forward
   * signals into its namespace, so kernels in it are interrupted with `interrupt_request`.
   */
  readonly forwardsSignals: boolean;
  spawn(options: SpawnOptions): Promise<SandboxProcess>;
}
