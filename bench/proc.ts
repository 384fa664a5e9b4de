import { type ChildProcess, spawn } from "node:child_process";

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

/** Children still running, by process group id (each child leads its own group). */
const liveGroups = new Map<number, ChildProcess>();
/** Asynchronous cleanups (kernels to shut down) run when the bench is interrupted. */
const cleanups = new Set<() => Promise<unknown>>();
let hooksInstalled = false;

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // the group is gone already
  }
}

/**
 * Makes SIGINT/SIGTERM shut everything down (registered cleanups, then child groups) before
 * exiting, and kills any child group still alive when the process exits for any reason.
 */
export function installSignalHandlers(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n[bench] ${signal}: shutting down kernels and child processes\n`);
    for (const pgid of liveGroups.keys()) killGroup(pgid, "SIGTERM");
    const deadline = new Promise((resolve) => setTimeout(resolve, 8000).unref());
    void Promise.race([Promise.allSettled([...cleanups].map((cleanup) => cleanup())), deadline]).finally(() =>
      process.exit(signal === "SIGINT" ? 130 : 143),
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", () => {
    for (const pgid of liveGroups.keys()) killGroup(pgid, "SIGKILL");
  });
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
 * Runs a command in its own process group and resolves when it has exited (never rejects for
 * a failing command: look at `code`). The group is killed on timeout and when the bench exits.
 */
export function runProcess(argv: readonly string[], options: RunOptions): Promise<ProcessResult> {
  const [command, ...args] = argv;
  if (command === undefined) return Promise.reject(new Error("runProcess: empty argv"));
  return new Promise((resolve) => {
    const startedAt = performance.now();
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const pgid = child.pid;
    if (pgid !== undefined) liveGroups.set(pgid, child);
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
      if (pgid !== undefined) liveGroups.delete(pgid);
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

/** One line describing how a process failed, with the tail of its stderr. */
export function describeFailure(result: ProcessResult, tailLines = 12): string {
  const how = result.timedOut
    ? "timed out"
    : result.signal
      ? `was killed by ${result.signal}`
      : `exited with code ${result.code}`;
  const tail = result.stderr.trim().split("\n").slice(-tailLines).join("\n");
  return `\`${result.argv.join(" ")}\` ${how}${tail ? `:\n${tail}` : ""}`;
}
