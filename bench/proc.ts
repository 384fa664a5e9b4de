import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

/** What a finished child process left behind. */
export interface ProcessResult {
  argv: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** From just before spawn until the process exited, in ms. */
  wallMs: number;
  timedOut: boolean;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** The process group is sent SIGTERM after this long, then SIGKILL 5 s later. */
  timeoutMs: number;
}

/** Children still running, by process group id (each child leads its own group), with their exit. */
const liveGroups = new Map<number, Promise<void>>();
/** Asynchronous cleanups (kernels to shut down) run when the bench is interrupted. */
const cleanups = new Set<() => Promise<unknown>>();
let hooksInstalled = false;
let interrupted = false;

/** Sends `signal` to a whole process group; a group that is gone already is not an error. */
export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // the group is gone already
  }
}

/**
 * Makes SIGINT/SIGTERM shut everything down (child groups, then registered cleanups) before
 * exiting, and kills any child group still alive when the process exits for any reason.
 */
export function installSignalHandlers(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n[bench] ${signal}: shutting down kernels and child processes\n`);
    // Children get SIGTERM and time to clean up (the Python driver shuts its kernel down), then
    // the registered cleanups run (in-process kernels, temporary files).
    for (const pgid of liveGroups.keys()) killGroup(pgid, "SIGTERM");
    const within = (ms: number, work: Array<Promise<unknown>>) =>
      Promise.race([Promise.allSettled(work), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
    const runCleanups = () =>
      within(
        5000,
        [...cleanups].map((cleanup) => cleanup()),
      );
    void within(5000, [...liveGroups.values()])
      .then(runCleanups)
      .finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", () => {
    for (const pgid of liveGroups.keys()) killGroup(pgid, "SIGKILL");
  });
}

/** True once SIGINT/SIGTERM arrived: the bench is shutting down and exits by itself. */
export function wasInterrupted(): boolean {
  return interrupted;
}

/** Registers a cleanup to run if the bench is interrupted; returns the function that unregisters it. */
export function onInterrupt(cleanup: () => Promise<unknown>): () => void {
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

/** Keeps at most the last `cap` characters of a stream's text. */
function collect(stream: NodeJS.ReadableStream | null, cap: number): () => string {
  let text = "";
  stream?.setEncoding("utf8");
  stream?.on("data", (chunk: string) => {
    text += chunk;
    if (text.length > cap * 2) text = text.slice(-cap);
  });
  return () => text.slice(-cap);
}

/**
 * Spawns `argv` as the leader of a new process group, tracked until it exits: an interrupted
 * bench ends the group, and any group still alive is killed when the bench exits.
 */
export function spawnTracked(
  argv: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv },
  stdin: "ignore" | "pipe",
): ChildProcess {
  const [command, ...args] = argv;
  if (command === undefined) throw new Error("empty argv");
  if (interrupted) throw new Error("the bench was interrupted");
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    detached: true,
    stdio: [stdin, "pipe", "pipe"],
  });
  const pgid = child.pid;
  if (pgid !== undefined) {
    liveGroups.set(
      pgid,
      new Promise((resolve) => {
        const done = () => {
          liveGroups.delete(pgid);
          resolve();
        };
        child.once("exit", done);
        child.once("error", done);
      }),
    );
  }
  return child;
}

/**
 * Runs a command in its own process group and resolves when it has exited (never rejects for
 * a failing command: look at `code`). The group is killed on timeout and when the bench exits.
 */
export function runProcess(argv: readonly string[], options: RunOptions): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const startedAt = performance.now();
    let child: ChildProcess;
    try {
      child = spawnTracked(argv, options, "ignore");
    } catch (error) {
      reject(error);
      return;
    }
    const pgid = child.pid;
    const stdout = collect(child.stdout, 4 * 1024 * 1024);
    const stderr = collect(child.stderr, 64 * 1024);
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      if (pgid === undefined) return;
      killGroup(pgid, "SIGTERM");
      killTimer = setTimeout(() => killGroup(pgid, "SIGKILL"), 5000);
    }, options.timeoutMs);

    let settled = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null, wallMs: number, extra = "") => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      resolve({
        argv: [...argv],
        code,
        signal,
        stdout: stdout(),
        stderr: stderr() + extra,
        wallMs,
        timedOut,
      });
    };
    child.once("error", (error) => finish(127, null, performance.now() - startedAt, `${error.message}\n`));
    child.once("exit", (code, signal) => {
      const wallMs = performance.now() - startedAt;
      // Output is complete once the pipes close; a grandchild holding them open must not hang us.
      const grace = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish(code, signal, wallMs);
      }, 2000);
      child.once("close", () => {
        clearTimeout(grace);
        finish(code, signal, wallMs);
      });
    });
  });
}

/**
 * A long-running child that speaks JSON lines: one request line on its stdin, one answer line
 * on its stdout. Runs in its own process group, which `close()` (and an interrupted bench)
 * ends, politely first.
 */
export class JsonLineProcess {
  readonly argv: readonly string[];
  readonly #child: ChildProcess;
  readonly #stderr: () => string;
  readonly #lines: string[] = [];
  #waiter: (() => void) | undefined;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly #exited: Promise<void>;

  constructor(argv: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv }) {
    this.argv = argv;
    this.#child = spawnTracked(argv, options, "pipe");
    this.#stderr = collect(this.#child.stderr, 64 * 1024);
    this.#child.stdin?.on("error", () => undefined); // EPIPE once the child has gone
    createInterface({ input: this.#child.stdout! }).on("line", (line) => {
      this.#lines.push(line);
      this.#waiter?.();
    });
    this.#exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        this.#exit ??= { code, signal };
        this.#waiter?.();
        resolve();
      };
      this.#child.once("exit", done);
      this.#child.once("error", () => done(127, null));
    });
  }

  /** The next line the child prints, parsed; rejects if it exits or stays silent for `timeoutMs`. */
  async next(timeoutMs: number): Promise<unknown> {
    const deadline = performance.now() + timeoutMs;
    while (this.#lines.length === 0) {
      if (this.#exit) throw new Error(this.#describeExit());
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no answer within ${timeoutMs} ms from \`${this.argv.join(" ")}\``);
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#waiter = undefined;
    }
    const line = this.#lines.shift()!;
    try {
      return JSON.parse(line) as unknown;
    } catch {
      throw new Error(`unreadable answer from \`${this.argv.join(" ")}\`: ${line.slice(0, 200)}`);
    }
  }

  /** Writes one request and waits for its answer. */
  request(message: unknown, timeoutMs: number): Promise<unknown> {
    this.#child.stdin?.write(`${JSON.stringify(message)}\n`);
    return this.next(timeoutMs);
  }

  /** Asks the child to quit (`quitMessage`, then end of stdin), then SIGTERM, then SIGKILL. */
  async close(quitMessage: unknown, graceMs = 10_000): Promise<void> {
    const pgid = this.#child.pid;
    const within = (ms: number) =>
      Promise.race([
        this.#exited.then(() => true),
        new Promise<boolean>((r) => setTimeout(r, ms, false).unref()),
      ]);
    if (!this.#exit) {
      this.#child.stdin?.end(`${JSON.stringify(quitMessage)}\n`);
      if (!(await within(graceMs)) && pgid !== undefined) {
        killGroup(pgid, "SIGTERM");
        if (!(await within(5000))) killGroup(pgid, "SIGKILL");
      }
    }
    await this.#exited;
  }

  #describeExit(): string {
    const exit = this.#exit;
    const how = exit?.signal ? `killed by ${exit.signal}` : `exited with code ${exit?.code ?? "?"}`;
    const tail = this.#stderr().trimEnd().split("\n").slice(-12);
    return [
      `${how}: ${tail[tail.length - 1]?.trim() ?? ""}`,
      `command: ${this.argv.join(" ")}`,
      ...tail,
    ].join("\n");
  }
}

/**
 * How a process failed: a first line with the exit and the last line of stderr (for Python,
 * the exception), then the command and the tail of its stderr.
 */
export function describeFailure(result: ProcessResult, tailLines = 12): string {
  const how = result.timedOut
    ? "timed out"
    : result.signal
      ? `killed by ${result.signal}`
      : `exited with code ${result.code}`;
  const tail = result.stderr.trimEnd().split("\n").slice(-tailLines);
  const last = tail[tail.length - 1]?.trim();
  return [`${how}${last ? `: ${last}` : ""}`, `command: ${result.argv.join(" ")}`, ...tail].join("\n");
}
