import { chmod, chown, mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join, normalize } from "node:path";
import { InvalidArgumentError } from "../errors.js";
import { CappedText } from "../execution/capped-text.js";
import { checkCode } from "../execution/check-code.js";
import { newExecution } from "../execution/new-execution.js";
import type { Execution, ExecutionError, ExecutionStatus, LimitKind, Output } from "../execution/types.js";
import { DEFAULT_CEILINGS, DEFAULT_LIMITS, type ResourceLimits, resolveLimits } from "../sandbox/limits.js";
import { BwrapSandbox } from "../sandbox/bwrap-sandbox.js";
import { exitCodeOfSignal, signalOfExitCode } from "../sandbox/exit-status.js";
import type { SandboxFactory } from "../sandbox/sandbox-factory.js";
import type { SandboxProcess } from "../sandbox/types.js";
import {
  defaultInterpreters,
  type Interpreters,
  type Language,
  languageSpec,
  parseLanguage,
} from "./languages.js";
import { parsePythonError } from "./python-errors.js";
import type { WarmPool } from "./warm-pool.js";

/** A file to place in the run's fresh workspace before the code starts. */
export interface InputFile {
  /** Relative path inside /workspace; no `..`, no absolute paths. */
  path: string;
  content: string | Uint8Array;
}

export interface RunOnceOptions {
  language: Language | string;
  code: string;
  /** Overrides of the default limits, each within the runner's ceilings. */
  limits?: Partial<ResourceLimits>;
  /** Allow network access. Default false. */
  network?: boolean;
  /** A host directory as /workspace instead of a fresh empty one. */
  workspace?: { hostPath: string; readOnly?: boolean };
  files?: InputFile[];
  /** Variables for the program, on top of a minimal PATH/HOME/LANG. runcell's own never leak in. */
  env?: Record<string, string>;
  /** Cancels the run (the process tree is killed; status `cancelled`). */
  signal?: AbortSignal;
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
  /**
   * Warm interpreter profile (e.g. `pandas`: numpy and pandas already imported). Python runs
   * without network, workspace or files use the runner's warm pool with profile `default`
   * when it has one; naming a profile requires such a run.
   */
  profile?: string;
}

export interface RunnerOptions {
  /** Warm interpreters for Python runs; without it every run starts a fresh interpreter. */
  warm?: WarmPool;
  sandboxes: SandboxFactory;
  /** Where per-run directories (code, input files) are made. */
  runtimeDir: string;
  ceilings?: ResourceLimits;
  defaults?: ResourceLimits;
  interpreters?: Interpreters;
  /** Largest accepted code, in bytes. Default 1 MiB. */
  maxCodeBytes?: number;
  /** Largest total of input files, in bytes. Default 64 MiB. */
  maxFilesBytes?: number;
}

/**
 * A one-shot request checked and resolved by {@link Runner.prepare}: what runOnce needs before it
 * spawns anything. Hand it to the same runner's runOnce.
 */
export interface PreparedRun {
  readonly runner: Runner;
  readonly options: RunOnceOptions;
  language: Language;
  limits: ResourceLimits;
  files: ReturnType<typeof validateFiles>;
  spec: ReturnType<typeof languageSpec>;
  /** The warm pool, when this run may use it. */
  warm: WarmPool | undefined;
  profile: string;
}

const BASE_ENV: Record<string, string> = {
  PATH: "/usr/local/bin:/usr/bin:/bin",
  HOME: "/workspace",
  LANG: "C.UTF-8",
  TMPDIR: "/tmp",
  MPLBACKEND: "Agg",
  MPLCONFIGDIR: "/tmp/.matplotlib",
};

/** Where the code file is mounted (read-only) inside the sandbox. */
const CODE_DIR = "/run/runcell";

/**
 * One-shot runs: each run is a fresh confined process tree with its own namespaces, limits,
 * workspace and environment; nothing survives it. Failures of the code, limit hits and
 * cancellation are data on the returned Execution; only invalid requests throw
 * (InvalidArgumentError).
 */
export class Runner {
  readonly #options: RunnerOptions;
  readonly #interpreters: Interpreters;
  readonly #cleanups = new Set<Promise<unknown>>();

  constructor(options: RunnerOptions) {
    this.#options = options;
    this.#interpreters = options.interpreters ?? defaultInterpreters();
  }

  /**
   * Checks and resolves a request without running it: throws the InvalidArgumentError runOnce
   * would (unknown language or profile, limits over the ceilings, code or files too large).
   * Cheap and synchronous, so a server can refuse a bad request before it waits for a run slot,
   * then pass the result to runOnce without checking it again.
   */
  prepare(options: RunOnceOptions): PreparedRun {
    const language = parseLanguage(options.language);
    const limits = resolveLimits(
      options.limits,
      this.#options.ceilings ?? DEFAULT_CEILINGS,
      this.#options.defaults ?? DEFAULT_LIMITS,
    );
    checkCode(options.code, this.#options.maxCodeBytes ?? 1024 * 1024);
    const files = validateFiles(options.files ?? [], this.#options.maxFilesBytes ?? 64 * 1024 * 1024);
    if (files.length > 0 && options.workspace) {
      throw new InvalidArgumentError("INVALID_FILES", "pass either files or a workspace directory, not both");
    }
    const spec = languageSpec(language, this.#interpreters);
    const pool = this.#options.warm;
    const warm =
      pool !== undefined &&
      language === "python" &&
      !options.network &&
      !options.workspace &&
      files.length === 0
        ? pool
        : undefined;
    if (options.profile !== undefined && !warm?.hasProfile(options.profile)) {
      throw new InvalidArgumentError(
        "INVALID_PROFILE",
        warm
          ? `unknown profile ${JSON.stringify(options.profile)}: use one of ${warm.profiles.join(", ")}`
          : "profiles apply to python runs without network, workspace or input files, on a runner with warm interpreters",
      );
    }
    return {
      runner: this,
      options,
      language,
      limits,
      files,
      spec,
      warm,
      profile: options.profile ?? "default",
    };
  }

  /** Runs a request, or one this runner prepared (see prepare). */
  async runOnce(request: RunOnceOptions | PreparedRun): Promise<Execution> {
    // Another runner's preparation is redone against this runner's ceilings and pool.
    const prepared =
      "runner" in request
        ? request.runner === this
          ? request
          : this.prepare(request.options)
        : this.prepare(request);
    const { options, language, limits, files, spec, warm, profile } = prepared;
    const record = newExecution({
      language,
      code: options.code,
      limits: {
        time_ms: limits.timeMs,
        memory_bytes: limits.memoryBytes,
        pids: limits.pids,
        output_bytes: limits.outputBytes,
        network: options.network ?? false,
      },
    });
    const started = performance.now();
    record.started_at = new Date().toISOString();
    record.status = "running";

    const runDir = join(this.#options.runtimeDir, `run-${record.id}`);
    const codeDir = join(runDir, "code");
    const workspaceDir = join(runDir, "workspace");
    const env = { ...BASE_ENV, ...options.env };
    let lease: Awaited<ReturnType<SandboxFactory["lease"]>> | undefined;
    let madeRunDir = false;
    try {
      const spawnCold = async (): Promise<SandboxProcess> => {
        madeRunDir = true;
        await mkdir(codeDir, { recursive: true, mode: 0o755 });
        await chmod(runDir, 0o755);
        await writeFile(join(codeDir, spec.fileName), options.code, { mode: 0o644 });
        lease = await this.#options.sandboxes.lease({
          limits,
          network: options.network ?? false,
          workspace: options.workspace
            ? { hostPath: options.workspace.hostPath, readOnly: options.workspace.readOnly ?? false }
            : files.length > 0
              ? { hostPath: workspaceDir, readOnly: false }
              : undefined,
          readOnlyPaths: spec.extraPaths,
          addressSpaceFallback: spec.toleratesAddressSpaceLimit,
        });
        // Report the limits actually in force, not the ones asked for.
        if (lease.sandbox instanceof BwrapSandbox) {
          if (!lease.sandbox.enforcesMemory) record.limits.memory_bytes = null;
          if (!lease.sandbox.enforcesPids) record.limits.pids = null;
        } else {
          record.limits.memory_bytes = null;
          record.limits.pids = null;
          record.limits.network = true;
        }
        if (files.length > 0) await writeInputFiles(workspaceDir, files, lease.hostUid);
        const codeFile =
          lease.sandbox.kind === "host" ? join(codeDir, spec.fileName) : `${CODE_DIR}/${spec.fileName}`;
        return lease.sandbox.spawn({
          argv: spec.command(codeFile),
          env,
          output: "pipe",
          binds: lease.sandbox.kind === "host" ? [] : [{ path: codeDir, writable: false, target: CODE_DIR }],
          cwd:
            lease.sandbox.kind === "host"
              ? (options.workspace?.hostPath ?? (files.length ? workspaceDir : runDir))
              : undefined,
        });
      };
      // A warm fork enforces memory and pids through its own cgroup; if the pool cannot serve
      // (its server died, no cgroup could be made) the run takes the cold path.
      const spawnWarm = async () =>
        warm?.spawn(profile, { code: options.code, env, limits }).catch(() => undefined);
      let proc = (await spawnWarm()) ?? (await spawnCold());
      let outcome = await this.#supervise(proc, limits, options);
      if (isLost(proc) && outcome.stdout.totalBytes === 0 && outcome.stderr.totalBytes === 0) {
        // Its warm server died before the code could start (the pool had not noticed yet): run
        // it again, once, on a new server or the cold path. Nothing of it had run or been shown.
        this.#track(proc.dispose(0).catch(() => undefined));
        proc = (await spawnWarm()) ?? (await spawnCold());
        outcome = await this.#supervise(proc, limits, options);
      }
      const usage = await proc.usage();
      if (lease) {
        await proc.dispose(0);
      } else {
        // A warm run's processes died with its pid namespace; removing its cgroup can finish
        // after the record is returned. settle() awaits it.
        this.#track(proc.dispose(0).catch(() => undefined));
      }
      const exit = proc.exitStatus ?? { code: null, signal: null };
      record.stdout = outcome.stdout.toString();
      record.stderr = outcome.stderr.toString();
      record.stdout_bytes = outcome.stdout.totalBytes;
      record.stderr_bytes = outcome.stderr.totalBytes;
      record.dropped_bytes = outcome.stdout.droppedBytes + outcome.stderr.droppedBytes;
      record.truncated = record.dropped_bytes > 0 || outcome.limit === "output";
      record.exit_code = exit.code ?? (exit.signal ? exitCodeOfSignal(exit.signal) : null);
      record.signal = exit.signal ?? signalOfExitCode(exit.code);
      record.cpu_ms = usage?.cpuMs ?? null;
      record.peak_memory_bytes = usage?.peakMemoryBytes ?? null;
      const { status, limit, error } = classify(
        language,
        outcome,
        exit.code,
        usage?.oomKilled ?? false,
        usage?.pidsLimitHit ?? false,
        record.stderr,
        limits,
        usage?.cpuMs ?? null,
      );
      record.status = status;
      record.limit = limit;
      record.error = error;
      record.outputs = streamOutputs(record.stdout, record.stderr);
    } catch (error) {
      if (error instanceof InvalidArgumentError) throw error;
      record.status = "failed";
      record.error = {
        name: "SandboxError",
        value: `runcell could not run the code: ${(error as Error).message}`,
        traceback: [],
        category: "environment",
      };
    } finally {
      lease?.release();
      // A warm run makes no run directory.
      if (madeRunDir) await rm(runDir, { recursive: true, force: true }).catch(() => undefined);
    }
    record.finished_at = new Date().toISOString();
    record.duration_ms = Math.round((performance.now() - started) * 1000) / 1000;
    return record;
  }

  /** Keeps a finished run's cleanup for settle(). */
  #track(cleanup: Promise<unknown>): void {
    this.#cleanups.add(cleanup);
    void cleanup.finally(() => this.#cleanups.delete(cleanup));
  }

  /** Resolves once every finished run's resources (cgroups) are released. */
  async settle(): Promise<void> {
    while (this.#cleanups.size > 0) await Promise.all([...this.#cleanups]);
  }

  /** Streams output with per-stream caps, and enforces wall time and cancellation. */
  #supervise(proc: SandboxProcess, limits: ResourceLimits, options: RunOnceOptions): Promise<Outcome> {
    const stdout = new CappedText(limits.outputBytes);
    const stderr = new CappedText(limits.outputBytes);
    let limit: Outcome["limit"] = null;
    let cancelled = false;
    const stop = (why: "time" | "output" | "cancel") => {
      if (limit || cancelled) return;
      if (why === "cancel") cancelled = true;
      else limit = why;
      proc.signalGroup("SIGKILL");
    };
    const pump = (stream: NodeJS.ReadableStream | null, text: CappedText, callback?: (t: string) => void) =>
      new Promise<void>((resolve) => {
        if (!stream) return resolve();
        const decoder = new TextDecoder("utf-8", { fatal: false });
        stream.on("data", (chunk: Buffer) => {
          // Count bytes as they arrive: the run is stopped at the cap, not after it.
          const piece = decoder.decode(chunk, { stream: true });
          text.append(piece);
          if (piece) callback?.(piece);
          if (text.totalBytes > limits.outputBytes) stop("output");
        });
        stream.on("end", () => {
          const rest = decoder.decode();
          if (rest) {
            text.append(rest);
            callback?.(rest);
          }
          resolve();
        });
        stream.on("error", () => resolve());
      });
    const timer = setTimeout(() => stop("time"), limits.timeMs);
    const onAbort = () => stop("cancel");
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.signal?.aborted) onAbort();
    return Promise.all([
      pump(proc.stdout, stdout, options.onStdout),
      pump(proc.stderr, stderr, options.onStderr),
      proc.exited,
    ]).then(() => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      return { stdout, stderr, limit, cancelled };
    });
  }
}

/** A warm run whose server died under it before it produced anything (see WarmPool). */
function isLost(proc: SandboxProcess): boolean {
  return (proc as { lost?: boolean }).lost === true;
}

interface Outcome {
  stdout: CappedText;
  stderr: CappedText;
  limit: "time" | "output" | null;
  cancelled: boolean;
}

function classify(
  language: Language,
  outcome: Outcome,
  exitCode: number | null,
  oomKilled: boolean,
  pidsLimitHit: boolean,
  stderr: string,
  limits: ResourceLimits,
  cpuMs: number | null,
): { status: ExecutionStatus; limit: LimitKind | null; error: ExecutionError | null } {
  const fail = (name: string, value: string, category: ExecutionError["category"]) => ({
    name,
    value,
    traceback: [],
    category,
  });
  if (outcome.cancelled)
    return {
      status: "cancelled",
      limit: null,
      error: fail("Cancelled", "the run was cancelled", "cancelled"),
    };
  if (outcome.limit === "time") {
    return {
      status: "timed_out",
      limit: "time",
      error: fail(
        "TimeoutError",
        `the run exceeded its ${limits.timeMs} ms time limit and was killed`,
        "timeout",
      ),
    };
  }
  if (outcome.limit === "output") {
    return {
      status: "failed",
      limit: "output",
      error: fail(
        "OutputLimitExceeded",
        `an output stream exceeded ${limits.outputBytes} bytes; the run was killed`,
        "output",
      ),
    };
  }
  if (oomKilled) {
    return {
      status: "failed",
      limit: "memory",
      error: fail(
        "MemoryLimitExceeded",
        `the run exceeded its ${limits.memoryBytes}-byte memory limit and was killed`,
        "memory",
      ),
    };
  }
  // 128 + SIGXCPU: the CPU-time rlimit fired. A program that catches or ignores SIGXCPU is
  // SIGKILLed at the hard limit instead: 128 + SIGKILL, not ours, after the CPU limit was used.
  if (exitCode === 152 || (exitCode === 137 && cpuMs !== null && cpuMs >= limits.cpuMs)) {
    return {
      status: "timed_out",
      limit: "time",
      error: fail("TimeoutError", `the run used more than ${limits.cpuMs} ms of CPU time`, "timeout"),
    };
  }
  // 128 + SIGXFSZ: a write went past the file-size rlimit.
  if (exitCode === 153) {
    return {
      status: "failed",
      limit: "file_size",
      error: fail("FileSizeLimitExceeded", `a file grew past the ${limits.fileBytes}-byte limit`, "runtime"),
    };
  }
  if (exitCode === 0) return { status: "completed", limit: null, error: null };
  // runcell's own launcher failed (could not join the cgroup, bwrap refused): not the code's fault.
  if (exitCode === 125 && /^(bwrap|runcell|setpriv|prlimit):/m.test(stderr)) {
    return {
      status: "failed",
      limit: null,
      error: fail("SandboxError", stderr.trim().split("\n").at(-1) ?? "", "environment"),
    };
  }
  const parsed = language === "python" ? parsePythonError(stderr) : null;
  // Python ignores SIGXFSZ, so the file-size limit shows as EFBIG rather than exit 153.
  if (parsed && /\[Errno 27\]/.test(parsed.value))
    return { status: "failed", limit: "file_size", error: parsed };
  if (parsed) return { status: "failed", limit: pidsLimitHit ? "pids" : null, error: parsed };
  return {
    status: "failed",
    limit: pidsLimitHit ? "pids" : null,
    error: fail("NonZeroExit", `the program exited with code ${exitCode ?? "unknown"}`, "runtime"),
  };
}

function streamOutputs(stdout: string, stderr: string): Output[] {
  const outputs: Output[] = [];
  if (stdout) outputs.push({ type: "stream", name: "stdout", text: stdout });
  if (stderr) outputs.push({ type: "stream", name: "stderr", text: stderr });
  return outputs;
}

function validateFiles(files: InputFile[], maxBytes: number): InputFile[] {
  let total = 0;
  for (const file of files) {
    const path = normalize(file.path);
    if (
      !file.path ||
      file.path.includes("\0") ||
      isAbsolute(file.path) ||
      // ".", "d/": a directory, not a file.
      path === "." ||
      path.endsWith("/") ||
      path.startsWith("..") ||
      path.split("/").includes("..")
    ) {
      throw new InvalidArgumentError(
        "INVALID_FILE_PATH",
        `file path ${JSON.stringify(file.path)} must name a file inside the workspace: relative, without ".."`,
      );
    }
    total += typeof file.content === "string" ? Buffer.byteLength(file.content) : file.content.byteLength;
  }
  if (total > maxBytes)
    throw new InvalidArgumentError(
      "FILES_TOO_LARGE",
      `input files total ${total} bytes; the limit is ${maxBytes}`,
    );
  return files;
}

async function writeInputFiles(dir: string, files: InputFile[], uid: number | null): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const file of files) {
    const target = join(dir, normalize(file.path));
    await mkdir(join(target, ".."), { recursive: true, mode: 0o700 });
    await writeFile(target, file.content, { mode: 0o600 });
    if (uid !== null) await chown(target, uid, uid);
  }
  if (uid !== null) {
    // Directories too, so the run can create files next to its inputs; every level of a nested
    // path, since mkdir made the intermediate ones root-owned 0700 and they must be traversable.
    const dirs = new Set<string>();
    for (const f of files) {
      for (let d = dirname(join(dir, normalize(f.path))); d !== dir; d = dirname(d)) dirs.add(d);
    }
    for (const d of [dir, ...dirs]) await chown(d, uid, uid);
  }
}
