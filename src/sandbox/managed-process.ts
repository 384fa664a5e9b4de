import { spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import type { CgroupStats } from "./cgroups-types.js";
import { type SpawnedChild, SpawnHelper } from "./spawn-helper.js";
import type { ProcessExit, SandboxProcess } from "./types.js";

/**
 * How child processes are started: `helper` (default) through a SpawnHelper started once, so
 * runcell's own process never forks (fork copies its page tables: ~40 µs per MiB of Node
 * memory); `direct` with child_process.spawn. The helper is restarted if it dies; if it cannot
 * start at all, spawning falls back to `direct`.
 */
export type SpawnStrategy = "helper" | "direct";

let strategy: SpawnStrategy = "helper";
let helper: Promise<SpawnHelper | null> | undefined;

/**
 * Chooses how child processes are started from now on (see SpawnStrategy). A long-lived
 * process (a server) keeps the default, `helper`; a short-lived small one (the CLI) is better
 * served by `direct`: its fork costs about a millisecond, less than starting the helper.
 */
export function setSpawnStrategy(next: SpawnStrategy): void {
  strategy = next;
}

/**
 * Starts the spawn helper now rather than at the first spawn: best done early, while the
 * process is still small (the helper itself is started with one fork). Resolves once it runs;
 * false when it cannot start (spawning then falls back to `direct`).
 */
export async function startSpawnHelper(): Promise<boolean> {
  return (await sharedHelper()) !== null;
}

function sharedHelper(): Promise<SpawnHelper | null> {
  const current = helper;
  if (current) {
    return current.then((h) => {
      if (h === null || h.alive) return h;
      if (helper === current) helper = undefined;
      return sharedHelper();
    });
  }
  const starting = SpawnHelper.start().catch(() => null);
  helper = starting;
  return starting;
}

/** child_process.spawn, seen as a SpawnedChild. */
function spawnDirect(options: ManagedSpawnOptions): { started: Promise<number>; child: SpawnedChild } {
  const child = spawn(options.argv[0]!, options.argv.slice(1), {
    env: options.env,
    cwd: options.cwd,
    detached: true, // own session and process group: signals reach the children too
    stdio: [options.input === "pipe" ? "pipe" : "ignore", "pipe", "pipe"],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>(
    (resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", (error) => resolve({ code: 127, signal: null, error }));
    },
  );
  const started = new Promise<number>((resolve, reject) => {
    child.once("spawn", () => resolve(child.pid!));
    child.once("error", reject);
  });
  started.catch(() => undefined);
  return {
    started,
    child: {
      get pid() {
        return child.pid ?? -1;
      },
      stdin: child.stdin,
      stdout: child.stdout!,
      stderr: child.stderr!,
      exited,
    },
  };
}

/**
 * Set in every managed child's environment: the pid of the process that started it (runcell,
 * or its spawn helper). A parent-death signal armed after the parent already died never fires,
 * so a launcher that arms one compares its parent with this afterwards (see bwrap-sandbox.ts).
 */
export const PARENT_PID_ENV = "RUNCELL_PARENT_PID";

/** Process groups still alive, killed synchronously if runcell exits without disposing them. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pgid of liveGroups) {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });
}

/** Keeps the last `capBytes` bytes written to it. */
export class TailBuffer {
  #chunks: Buffer[] = [];
  #bytes = 0;
  constructor(readonly capBytes: number) {}
  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    while (this.#bytes > this.capBytes && this.#chunks.length > 1) {
      this.#bytes -= this.#chunks.shift()!.length;
    }
  }
  toString(): string {
    const all = Buffer.concat(this.#chunks);
    return all.subarray(Math.max(0, all.length - this.capBytes)).toString("utf8");
  }
}

export interface ManagedSpawnOptions {
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
  /** `tail`: keep the last bytes of stdout+stderr for reports; `pipe`: hand both streams to the caller. */
  output: "tail" | "pipe";
  /** `pipe`: give the caller the process's stdin. Default: /dev/null. */
  input?: "ignore" | "pipe";
  tailBytes?: number;
  /** Runs in dispose() once the process is gone (e.g. removing its cgroup). */
  onDispose?: () => Promise<void>;
  /** Set {@link PARENT_PID_ENV} in the process's environment. */
  tellParent?: boolean;
  /** Overrides the process-wide SpawnStrategy for this process. */
  strategy?: SpawnStrategy;
  /** Reads what the process tree used (from its cgroup); absent when nothing measures it. */
  usage?: () => Promise<CgroupStats | null>;
}

/**
 * A child process in its own session and process group, so one signal reaches it and every
 * child it started. Its group is SIGKILLed when it exits and when runcell exits.
 */
export class ManagedProcess implements SandboxProcess {
  readonly exited: Promise<ProcessExit>;
  exitStatus: ProcessExit | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  readonly stdin: Writable | null;
  readonly #child: SpawnedChild;
  readonly #tail: TailBuffer;
  readonly #cleanedUp: Promise<void>;
  readonly #options: ManagedSpawnOptions;
  #disposing: Promise<void> | undefined;

  private constructor(child: SpawnedChild, options: ManagedSpawnOptions) {
    this.#child = child;
    this.#tail = new TailBuffer(options.tailBytes ?? 16 * 1024);
    this.stdin = child.stdin ?? null;
    // A process that exits while we write must not crash runcell with EPIPE.
    this.stdin?.on("error", () => undefined);
    if (options.output === "tail") {
      // Drain both pipes so a chatty process can never block on a full pipe.
      child.stdout?.on("data", (chunk: Buffer) => this.#tail.push(chunk));
      child.stderr?.on("data", (chunk: Buffer) => this.#tail.push(chunk));
      this.stdout = null;
      this.stderr = null;
    } else {
      this.stdout = child.stdout;
      this.stderr = child.stderr;
    }
    this.exited = child.exited.then(({ code, signal, error }) => {
      // A program that could not be started says why where its output would have been.
      if (error) this.#tail.push(Buffer.from(`runcell: cannot start ${options.argv[0]}: ${error.message}\n`));
      this.exitStatus = { code, signal };
      return this.exitStatus;
    });
    this.#cleanedUp = this.exited.then(async () => {
      // The group may outlive its leader (children it started): end it with the leader.
      this.#killGroup("SIGKILL");
      liveGroups.delete(this.pid);
    });
    this.#options = options;
  }

  /** Spawns `argv` in a new session; resolves once the process exists (or failed to). */
  static async spawn(options: ManagedSpawnOptions): Promise<ManagedProcess> {
    installExitHook();
    const via = (options.strategy ?? strategy) === "helper" ? await sharedHelper() : null;
    // The pid the child is started by, so that a launcher chain can tell that its parent died
    // before the parent-death signal was armed (see PARENT_PID_ENV).
    const env = options.tellParent
      ? { ...options.env, [PARENT_PID_ENV]: String(via ? via.pid : process.pid) }
      : options.env;
    const { started, child } = via
      ? via.spawn({ argv: options.argv, env, cwd: options.cwd, stdin: options.input === "pipe" })
      : spawnDirect({ ...options, env });
    const proc = new ManagedProcess(child, options);
    // Surface spawn failures (ENOENT…) as an exit the caller can report.
    const pid = await started.catch(() => undefined);
    if (pid !== undefined && !proc.exitStatus) liveGroups.add(pid);
    return proc;
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Memory, CPU and limit hits of the whole tree, where a cgroup measures them; else null. */
  usage(): Promise<CgroupStats | null> {
    return this.#options.usage?.() ?? Promise.resolve(null);
  }

  stderrTail(): string {
    return this.#tail.toString();
  }

  signalGroup(signal: NodeJS.Signals): void {
    this.#killGroup(signal);
  }

  #killGroup(signal: NodeJS.Signals): void {
    if (this.pid <= 0) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      // the group is gone already
    }
  }

  dispose(graceMs = 2000): Promise<void> {
    this.#disposing ??= (async () => {
      if (!this.exitStatus) {
        this.#killGroup("SIGTERM");
        let timer: NodeJS.Timeout | undefined;
        const killed = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            this.#killGroup("SIGKILL");
            resolve();
          }, graceMs);
        });
        await Promise.race([this.exited, killed]);
        clearTimeout(timer);
      }
      await this.#cleanedUp;
      await this.#options.onDispose?.().catch(() => undefined);
    })();
    return this.#disposing;
  }
}
