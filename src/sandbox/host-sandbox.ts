import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import type { ProcessExit, Sandbox, SandboxProcess, SpawnOptions } from "./types.js";

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

const SETPRIV = "/usr/bin/setpriv";

/** Keeps the last `capBytes` bytes written to it. */
class TailBuffer {
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

class HostProcess implements SandboxProcess {
  readonly exited: Promise<ProcessExit>;
  exitStatus: ProcessExit | undefined;
  readonly #child: ChildProcess;
  readonly #tail: TailBuffer;
  #disposing: Promise<void> | undefined;

  constructor(child: ChildProcess, tailBytes: number) {
    this.#child = child;
    this.#tail = new TailBuffer(tailBytes);
    // Drain both pipes so a chatty process can never block on a full pipe.
    child.stdout?.on("data", (chunk: Buffer) => this.#tail.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => this.#tail.push(chunk));
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitStatus = { code, signal };
        resolve(this.exitStatus);
      });
      child.once("error", () => {
        this.exitStatus ??= { code: 127, signal: null };
        resolve(this.exitStatus);
      });
    });
    void this.exited.then(() => {
      // The group may outlive its leader (children the kernel started): end it with the leader.
      this.#killGroup("SIGKILL");
      liveGroups.delete(this.pid);
    });
  }

  get pid(): number {
    return this.#child.pid ?? -1;
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
      if (this.exitStatus) return;
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
      await this.exited;
    })();
    return this.#disposing;
  }
}

/**
 * Runs processes directly on the host, each in its own process group and session, with the
 * parent-death signal set so they die with runcell even when runcell is killed with SIGKILL.
 * This provides no isolation; it is the `--sandbox none` mode and the test bed for the engine.
 */
export class HostSandbox implements Sandbox {
  readonly kind = "host";
  readonly #usePdeathsig = existsSync(SETPRIV);

  async spawn(options: SpawnOptions): Promise<SandboxProcess> {
    installExitHook();
    const argv = this.#usePdeathsig ? [SETPRIV, "--pdeathsig", "KILL", "--", ...options.argv] : options.argv;
    const child = spawn(argv[0]!, argv.slice(1), {
      env: options.env,
      cwd: options.cwd,
      detached: true, // own session and process group: signals reach the kernel's children too
      stdio: ["ignore", "pipe", "pipe"],
    });
    const proc = new HostProcess(child, options.stderrTailBytes ?? 16 * 1024);
    if (child.pid !== undefined) liveGroups.add(child.pid);
    // Surface spawn failures (ENOENT…) as an exit the caller can report, after giving the
    // 'error' event a chance to fire.
    await new Promise<void>((resolve) => {
      child.once("spawn", resolve);
      child.once("error", () => resolve());
    });
    return proc;
  }
}
