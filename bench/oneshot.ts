import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { loadConfig } from "../src/config/config.js";
import type { Execution } from "../src/execution/types.js";
import { prepareRuntimeDir } from "../src/kernels/kernel-manager.js";
import { defaultInterpreters } from "../src/runner/languages.js";
import { Runner } from "../src/runner/runner.js";
import { WarmPool } from "../src/runner/warm-pool.js";
import { detectCgroups } from "../src/sandbox/cgroups.js";
import type { CgroupManager, CgroupSupport } from "../src/sandbox/cgroups-types.js";
import { DEFAULT_LIMITS } from "../src/sandbox/limits.js";
import { SandboxFactory } from "../src/sandbox/sandbox-factory.js";
import { SYSTEM_PYTHON } from "./env.js";
import { killGroup, onInterrupt, spawnTracked, wasInterrupted } from "./proc.js";
import { round, roundSummary, type Summary, summarize } from "./stats.js";

/**
 * `runcell`: Runner.runOnce on a Runner with a warm pool when this build has one (the path the
 * goals are about), else the Runner as the CLI builds it. `runcell_cold`: the CLI's Runner, no
 * warm pool, shown next to it when the first one is warm. `bwrap`, `python`: direct spawns.
 */
export type OneshotEngine = "runcell" | "runcell_cold" | "bwrap" | "python";

/** One value per engine; `runcell_cold` is null when `runcell` is already the cold path. */
export interface PerEngine<T> {
  runcell: T;
  runcell_cold: T | null;
  bwrap: T;
  python: T;
}

export const ONESHOT_CODE = "print(1+1)";
export const PANDAS_CODE = "import pandas; print(pandas.__version__)";
/** The warm pool's profile with numpy and pandas imported ahead of time. */
const PANDAS_PROFILE = "pandas";

const BWRAP = "/usr/bin/bwrap";

/**
 * What a minimal confined spawn costs: every namespace, a read-only /usr with the merged-/usr
 * links, fresh /proc and /dev, a private /tmp, death with the parent and a new session. No
 * cgroup, no rlimits, no uid change, no /etc: less than runcell sets up for every run.
 */
export const BWRAP_FLAGS: readonly string[] = [
  "--unshare-all",
  "--die-with-parent",
  "--new-session",
  "--ro-bind",
  "/usr",
  "/usr",
  "--symlink",
  "usr/bin",
  "/bin",
  "--symlink",
  "usr/lib",
  "/lib",
  "--symlink",
  "usr/lib64",
  "/lib64",
  "--proc",
  "/proc",
  "--dev",
  "/dev",
  "--tmpfs",
  "/tmp",
];

/**
 * numpy (under pandas) loads BLAS and LAPACK through Debian's alternatives symlinks in /etc, so
 * the sandboxed pandas spawn needs that directory too (runcell's /etc allowlist has it).
 */
export const BWRAP_PANDAS_FLAGS: readonly string[] = ["--ro-bind", "/etc/alternatives", "/etc/alternatives"];

/** The environment of the spawned commands (runcell gives its runs a similar minimal one). */
const SPAWN_ENV: NodeJS.ProcessEnv = { PATH: "/usr/bin:/bin", LANG: "C.UTF-8" };
/** Blocks per engine in the throughput test (fewer when there are too few runs for them). */
const THROUGHPUT_BLOCKS = 4;
/** No single run may take longer than this (runcell's default run time limit is 30 s). */
const RUN_TIMEOUT_MS = 60_000;

export interface OneshotOptions {
  /** Measured one-shot runs per engine. */
  runs: number;
  /** Unmeasured runs per engine before the measured ones. */
  warmup: number;
  /** Measured runs are made in blocks of this many; the engines take turns block by block. */
  block: number;
  /** Runs per engine in the throughput test, spread over `clients` concurrent loops. */
  throughputRuns: number;
  clients: number;
  /** Measured `import pandas` runs per engine (0 skips that part). */
  pandasRuns: number;
  log: (line: string) => void;
}

export interface EngineLatency {
  summary: Summary;
  samples_ms: number[];
}

export interface ThroughputBlock {
  runs: number;
  wall_ms: number;
}

export interface EngineThroughput {
  runs: number;
  wall_ms: number;
  runs_per_s: number;
  blocks: ThroughputBlock[];
}

export interface CgroupsInfo {
  /** Whether runcell's runs got a cgroup (memory and pids limits, usage measurements). */
  in_use: boolean;
  version: CgroupSupport["version"] | "unavailable";
  memory: boolean;
  pids: boolean;
  notes: string[];
}

/**
 * Which path runcell's runs took: a fresh sandboxed interpreter each (`cold`), a fork of a
 * pre-warmed one (`warm`), or some of each (the warm pool could not serve every run).
 */
export type RunnerPath = "cold" | "warm" | "mixed";

/** The `runcell` engine's runs of one part of the section, by the path they took. */
export interface PathCount {
  path: RunnerPath;
  runs: number;
  warm_runs: number;
}

export interface WarmPoolInfo {
  /** Whether the `runcell` engine's Runner has a warm pool. */
  in_use: boolean;
  /** Why it has none, or why the pool failed to serve runs. */
  error: string | null;
  profiles: string[];
  /** How long each profile's fork server took to start (warmed before its part is measured). */
  start_ms: Record<string, number>;
  /** Runs the pool failed to serve (the Runner then takes the cold path). */
  failed_runs: number;
}

export type PandasResult =
  | {
      available: true;
      version: string;
      runs: number;
      warmup: number;
      block: number;
      /** The `runcell` engine's path for these runs, and the profile it asked for. */
      runner: PathCount & { profile: string | null; label: string };
      engines: PerEngine<EngineLatency>;
      /** runcell p50 / bwrap p50. */
      p50_ratio_vs_bwrap: number;
      cold_p50_ratio_vs_bwrap: number | null;
      p50_ratio_vs_python: number;
    }
  | { available: false; error: string };

export interface OneshotResult {
  code: string;
  runner: {
    /** The path of the `runcell` engine's print(1+1) runs (latency and throughput, warm-up included). */
    path: RunnerPath;
    warm_pool: WarmPoolInfo;
    runtime_dir: string;
    cgroups: CgroupsInfo;
    /** The limits runcell reported in force on its first run (null: not enforced). */
    limits_in_force: Execution["limits"] | null;
  };
  commands: Record<"bwrap" | "bwrap_pandas" | "python", string>;
  latency: {
    runs: number;
    warmup: number;
    block: number;
    runner: PathCount;
    engines: PerEngine<EngineLatency>;
    /** Execution.duration_ms of the `runcell` engine's measured runs: the Runner's own view. */
    runcell_duration_ms: Summary;
    p50_ratio_vs_bwrap: number;
    p95_ratio_vs_bwrap: number;
    cold_p50_ratio_vs_bwrap: number | null;
    p50_ratio_vs_python: number;
  };
  throughput: {
    clients: number;
    runs: number;
    runner: PathCount;
    engines: PerEngine<EngineThroughput>;
    /** runcell runs/s ÷ bwrap runs/s. */
    ratio_vs_bwrap: number;
    cold_ratio_vs_bwrap: number | null;
    ratio_vs_python: number;
  };
  pandas: PandasResult;
}

/** One way of running a snippet once; `run` resolves with the time it took and checks the output. */
interface Driver {
  engine: OneshotEngine;
  /** `profile` is a warm-pool profile, used by a Runner that has one and ignored otherwise. */
  run(code: string, expectedStdout: string, profile?: string): Promise<number>;
}

export interface SpawnOutcome {
  ms: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Spawns `argv` (own process group, tracked for Ctrl-C) and resolves when it has exited and both
 * pipes are drained; `ms` runs from just before spawn until then.
 */
export function timedSpawn(argv: readonly string[]): Promise<SpawnOutcome> {
  return new Promise((resolve, reject) => {
    const startedAt = performance.now();
    let child: ChildProcess;
    try {
      child = spawnTracked(argv, { cwd: "/", env: SPAWN_ENV }, "ignore");
    } catch (error) {
      reject(error as Error);
      return;
    }
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) killGroup(child.pid, "SIGKILL");
    }, RUN_TIMEOUT_MS);
    let settled = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null, extra = "") => {
      const ms = performance.now() - startedAt;
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Killed by the bench's shutdown: not a result of the command.
      if (wasInterrupted()) {
        reject(new Error("the bench was interrupted"));
        return;
      }
      resolve({
        ms,
        code,
        signal,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8") + extra,
        timedOut,
      });
    };
    child.once("error", (error) => finish(127, null, `${error.message}\n`));
    child.once("close", (code, signal) => finish(code, signal));
  });
}

export function tail(text: string, lines = 8): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

export function describeExit(outcome: SpawnOutcome): string {
  if (outcome.timedOut) return `timed out after ${RUN_TIMEOUT_MS} ms`;
  return outcome.signal ? `killed by ${outcome.signal}` : `exited with code ${outcome.code}`;
}

function spawnDriver(engine: OneshotEngine, argvFor: (code: string) => string[]): Driver {
  return {
    engine,
    async run(code, expectedStdout) {
      const argv = argvFor(code);
      const outcome = await timedSpawn(argv);
      if (outcome.code !== 0 || outcome.stdout !== expectedStdout) {
        throw new Error(
          `${engine}: ${describeExit(outcome)}, stdout ${JSON.stringify(outcome.stdout.slice(0, 200))} ` +
            `(expected ${JSON.stringify(expectedStdout)})\ncommand: ${showCommand(argv)}\n${tail(outcome.stderr)}`,
        );
      }
      return outcome.ms;
    },
  };
}

export const bwrapArgv = (extra: readonly string[], code: string): string[] => [
  BWRAP,
  ...BWRAP_FLAGS,
  ...extra,
  "--",
  SYSTEM_PYTHON,
  "-c",
  code,
];
const pythonArgv = (code: string): string[] => [SYSTEM_PYTHON, "-c", code];

/** A command line as a shell would take it (arguments with spaces or quotes single-quoted). */
export function showCommand(argv: readonly string[]): string {
  return argv
    .map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`))
    .join(" ");
}

/** A warm pool that counts the runs it served and failed to serve (the Runner then goes cold). */
class CountingWarmPool extends WarmPool {
  served = 0;
  failed = 0;
  lastError: string | null = null;

  override async spawn(...args: Parameters<WarmPool["spawn"]>): ReturnType<WarmPool["spawn"]> {
    try {
      const proc = await super.spawn(...args);
      this.served++;
      return proc;
    } catch (error) {
      this.failed++;
      this.lastError = (error as Error).message;
      throw error;
    }
  }
}

/** runcell's side: Runner.runOnce, timed around the call, with its output checked. */
interface RuncellDriver extends Driver {
  /** Runs started so far, and how many of them the warm pool served. */
  counts(): { runs: number; warm: number };
  /** Execution.duration_ms of every run so far. */
  durations: number[];
  firstLimits: Execution["limits"] | null;
}

interface RuncellSetup {
  /** The Runner with the warm pool if there is one, else the CLI's Runner. */
  main: RuncellDriver;
  /** The CLI's Runner (no warm pool), when `main` has one. */
  cold: RuncellDriver | null;
  pool: CountingWarmPool | null;
  poolInfo: WarmPoolInfo;
  runtimeDir: string;
  cgroups: CgroupsInfo;
  close(): Promise<void>;
}

/**
 * A private runtime dir (mode 0711, every parent searchable by the sandbox uids) next to
 * runcell's configured one, or under the system temp dir when that one's parent is private.
 */
async function makeRuntimeDir(): Promise<string> {
  const candidates = [...new Set([dirname(loadConfig().runtimeDir), tmpdir()])];
  let lastError: unknown;
  for (const parent of candidates) {
    let dir: string | undefined;
    try {
      dir = await mkdtemp(join(parent, "runcell-bench-"));
      await prepareRuntimeDir(dir, { sandboxed: true });
      return dir;
    } catch (error) {
      lastError = error;
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  }
  throw new Error(`no usable runtime dir: ${(lastError as Error).message}`, { cause: lastError });
}

function cgroupsInfo(manager: CgroupManager | null, detected: CgroupManager | null): CgroupsInfo {
  const support = detected?.support;
  return {
    in_use: manager !== null && Boolean(manager.support.memory || manager.support.pids),
    version: support?.version ?? "unavailable",
    memory: Boolean(manager?.support.memory),
    pids: Boolean(manager?.support.pids),
    notes: support?.notes ?? ["cgroup detection failed"],
  };
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const startedAt = performance.now();
  await work();
  return round(performance.now() - startedAt, 1);
}

/**
 * Builds runcell's Runners the way the CLI does (bubblewrap sandboxes from a SandboxFactory,
 * the host's cgroups, a prepared runtime dir), one of them with a warm pool when cgroups allow.
 * Everything is torn down by `close()`, and on Ctrl-C.
 */
async function startRuncell(): Promise<RuncellSetup> {
  const runtimeDir = await makeRuntimeDir();
  const controller = new AbortController();
  const inFlight = new Set<Promise<Execution>>();
  let pool: CountingWarmPool | null = null;
  /** Runners made below; their cgroup cleanups are awaited on close. */
  const runners: Runner[] = [];
  let closed: Promise<void> | undefined;
  // Interrupted or done: cancel what runs (runcell kills the tree and removes its cgroup and run
  // directory), wait for it, stop the warm pool, then remove the runtime dir.
  const close = () =>
    (closed ??= (async () => {
      controller.abort();
      await Promise.allSettled([...inFlight]);
      await Promise.allSettled(runners.map((runner) => runner.settle()));
      await pool?.dispose().catch(() => undefined);
      await rm(runtimeDir, { recursive: true, force: true });
    })());
  const unregister = onInterrupt(close);

  const driver = (engine: OneshotEngine, runner: Runner, warm: CountingWarmPool | null): RuncellDriver => {
    let runs = 0;
    const self: RuncellDriver = {
      engine,
      durations: [],
      firstLimits: null,
      counts: () => ({ runs, warm: warm?.served ?? 0 }),
      async run(code, expectedStdout, profile) {
        if (controller.signal.aborted || wasInterrupted()) throw new Error("the bench was interrupted");
        const useProfile = profile !== undefined && warm?.hasProfile(profile) ? profile : undefined;
        runs++;
        const startedAt = performance.now();
        const pending = runner.runOnce({
          language: "python",
          code,
          signal: controller.signal,
          ...(useProfile ? { profile: useProfile } : {}),
        });
        inFlight.add(pending);
        let execution: Execution;
        try {
          execution = await pending;
        } finally {
          inFlight.delete(pending);
        }
        const ms = performance.now() - startedAt;
        if (execution.status !== "completed" || execution.stdout !== expectedStdout) {
          throw new Error(
            `${engine}: run ended ${execution.status}, stdout ${JSON.stringify(execution.stdout.slice(0, 200))} ` +
              `(expected ${JSON.stringify(expectedStdout)}): ${execution.error?.name ?? ""} ` +
              `${execution.error?.value ?? ""}\n${tail(execution.stderr)}`,
          );
        }
        self.firstLimits ??= execution.limits;
        if (execution.duration_ms !== null) self.durations.push(execution.duration_ms);
        return ms;
      },
    };
    return self;
  };

  try {
    const detected = await detectCgroups().catch(() => null);
    const cgroups = detected?.support.version === "none" ? null : detected;
    const sandboxes = new SandboxFactory({ mode: "bwrap", cgroups, runtimeDir });
    const cliRunner = new Runner({ sandboxes, runtimeDir });
    runners.push(cliRunner);
    const poolInfo: WarmPoolInfo = { in_use: false, error: null, profiles: [], start_ms: {}, failed_runs: 0 };
    if (!cgroups) {
      poolInfo.error = "the warm pool needs cgroups, and this host has none runcell can use";
    } else {
      const candidate = new CountingWarmPool({
        sandboxes,
        cgroups,
        runtimeDir,
        python: defaultInterpreters().python,
        standbyLimits: DEFAULT_LIMITS,
      });
      pool = candidate;
      try {
        poolInfo.start_ms.default = await timed(() => candidate.warm("default"));
        poolInfo.in_use = true;
        poolInfo.profiles = candidate.profiles;
      } catch (error) {
        poolInfo.error = `the warm pool did not start: ${(error as Error).message}`;
        pool = null;
        await candidate.dispose().catch(() => undefined);
      }
    }
    const warmRunner = pool ? new Runner({ sandboxes, runtimeDir, warm: pool }) : null;
    if (warmRunner) runners.push(warmRunner);
    return {
      main: warmRunner ? driver("runcell", warmRunner, pool) : driver("runcell", cliRunner, null),
      cold: warmRunner ? driver("runcell_cold", cliRunner, null) : null,
      pool,
      poolInfo,
      runtimeDir,
      cgroups: cgroupsInfo(cgroups, detected),
      close: async () => {
        await close();
        unregister();
      },
    };
  } catch (error) {
    await close();
    unregister();
    throw error;
  }
}

/** What the `runcell` engine's runs between two snapshots of its counts took. */
function pathSince(driver: RuncellDriver, before: { runs: number; warm: number }): PathCount {
  const now = driver.counts();
  const runs = now.runs - before.runs;
  const warm = now.warm - before.warm;
  return { path: warm === 0 ? "cold" : warm >= runs ? "warm" : "mixed", runs, warm_runs: warm };
}

/** The engines in block `index`'s order: rotated by one each block, so each takes every position. */
export function rotate<T>(items: readonly T[], index: number): T[] {
  const shift = index % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/**
 * Sequential runs of `code`: `warmup` unmeasured runs per engine, then `runs` measured ones in
 * blocks of `block` that rotate between the engines. Only one engine runs at any moment.
 */
async function measureLatency(
  drivers: readonly Driver[],
  code: string,
  expectedStdout: string,
  counts: { runs: number; warmup: number; block: number },
  profile?: string,
): Promise<Map<Driver, number[]>> {
  for (const driver of drivers) {
    for (let i = 0; i < counts.warmup; i++) await driver.run(code, expectedStdout, profile);
  }
  const samples = new Map(drivers.map((driver) => [driver, [] as number[]]));
  for (let done = 0, block = 0; done < counts.runs; block++) {
    const count = Math.min(counts.block, counts.runs - done);
    for (const driver of rotate(drivers, block)) {
      const into = samples.get(driver)!;
      for (let i = 0; i < count; i++) into.push(await driver.run(code, expectedStdout, profile));
    }
    done += count;
  }
  return samples;
}

/** `clients` loops at once, each making its share of `runs` back to back; the wall time of them all. */
async function concurrentBlock(driver: Driver, runs: number, clients: number): Promise<ThroughputBlock> {
  const shares = Array.from(
    { length: clients },
    (_, index) => Math.floor(runs / clients) + (index < runs % clients ? 1 : 0),
  );
  const startedAt = performance.now();
  await Promise.all(
    shares.map(async (share) => {
      for (let i = 0; i < share; i++) await driver.run(ONESHOT_CODE, "2\n");
    }),
  );
  return { runs, wall_ms: performance.now() - startedAt };
}

/**
 * Throughput with `clients` concurrent loops per engine, in up to four blocks per engine that
 * take turns (rotating), so that the machine's speed drifting during the test (other tenants,
 * thermal) weighs on every engine alike.
 */
async function measureThroughput(
  drivers: readonly Driver[],
  runs: number,
  clients: number,
): Promise<Map<Driver, ThroughputBlock[]>> {
  const blocks = Math.max(1, Math.min(THROUGHPUT_BLOCKS, Math.floor(runs / (25 * clients))));
  const blockRuns = Array.from(
    { length: blocks },
    (_, index) => Math.floor(runs / blocks) + (index < runs % blocks ? 1 : 0),
  );
  const results = new Map(drivers.map((driver) => [driver, [] as ThroughputBlock[]]));
  for (const [index, count] of blockRuns.entries()) {
    for (const driver of rotate(drivers, index)) {
      results.get(driver)!.push(await concurrentBlock(driver, count, clients));
    }
  }
  return results;
}

function latencyOf(samples: readonly number[]): EngineLatency {
  return {
    summary: roundSummary(summarize(samples)),
    samples_ms: samples.map((ms) => round(ms)),
  };
}

function perEngine<T, U>(
  drivers: readonly Driver[],
  values: Map<Driver, T>,
  convert: (value: T) => U,
): PerEngine<U> {
  const of = (engine: OneshotEngine): U | null => {
    const driver = drivers.find((candidate) => candidate.engine === engine);
    return driver ? convert(values.get(driver)!) : null;
  };
  return {
    runcell: of("runcell")!,
    runcell_cold: of("runcell_cold"),
    bwrap: of("bwrap")!,
    python: of("python")!,
  };
}

function throughputOf(blocks: ThroughputBlock[]): EngineThroughput {
  const runs = blocks.reduce((sum, block) => sum + block.runs, 0);
  const wall = blocks.reduce((sum, block) => sum + block.wall_ms, 0);
  return {
    runs,
    wall_ms: round(wall, 1),
    runs_per_s: round(runs / (wall / 1000), 2),
    blocks: blocks.map((block) => ({ runs: block.runs, wall_ms: round(block.wall_ms, 1) })),
  };
}

const ratioOf = (ours: number | undefined, theirs: number): number | null =>
  ours === undefined ? null : round(ours / theirs);

/** Imports pandas with the unconfined interpreter: its version, or why it is not available. */
async function pandasVersion(): Promise<{ version: string } | { error: string }> {
  const outcome = await timedSpawn(pythonArgv(PANDAS_CODE));
  const version = outcome.stdout.trim();
  if (outcome.code !== 0 || !version) {
    const last = tail(outcome.stderr, 1);
    return {
      error: `${showCommand(pythonArgv(PANDAS_CODE))} ${describeExit(outcome)}${last ? `: ${last}` : ""}`,
    };
  }
  return { version };
}

/**
 * One-shot runs of `print(1+1)` through runcell's Runner (bubblewrap, cgroups, rlimits; warm
 * interpreters when the Runner has them) against spawning a minimal bubblewrap sandbox and
 * plain python directly: sequential latency, throughput with concurrent clients, and `import
 * pandas`.
 */
export async function runOneshotBench(options: OneshotOptions): Promise<OneshotResult> {
  if (!existsSync(BWRAP)) throw new Error(`${BWRAP} does not exist: bubblewrap is not installed`);
  const runcell = await startRuncell();
  try {
    const bwrap = spawnDriver("bwrap", (code) => bwrapArgv([], code));
    const python = spawnDriver("python", pythonArgv);
    const drivers: Driver[] = [runcell.main, ...(runcell.cold ? [runcell.cold] : []), bwrap, python];
    options.log(
      `one-shot: cgroups ${runcell.cgroups.in_use ? `in use (${runcell.cgroups.version})` : "not in use"}, ` +
        `warm pool ${runcell.poolInfo.in_use ? "in use" : `not in use (${runcell.poolInfo.error ?? "?"})`}, ` +
        `runtime dir ${runcell.runtimeDir}`,
    );

    options.log(
      `one-shot: ${JSON.stringify(ONESHOT_CODE)}, ${options.warmup} warm-up + ${options.runs} measured ` +
        `per engine, in blocks of ${options.block}`,
    );
    const printStart = runcell.main.counts();
    const latencySamples = await measureLatency(drivers, ONESHOT_CODE, "2\n", {
      runs: options.runs,
      warmup: options.warmup,
      block: options.block,
    });
    const latencyPath = pathSince(runcell.main, printStart);
    const latency = perEngine(drivers, latencySamples, latencyOf);
    // Warm-up runs come first; only the measured runs' durations count.
    const runcellDurations = runcell.main.durations.slice(-options.runs);

    options.log(
      `one-shot: throughput, ${options.throughputRuns} runs per engine over ${options.clients} concurrent clients`,
    );
    const throughputStart = runcell.main.counts();
    const throughputBlocks = await measureThroughput(drivers, options.throughputRuns, options.clients);
    const throughputPath = pathSince(runcell.main, throughputStart);
    const throughput = perEngine(drivers, throughputBlocks, throughputOf);
    const printPath = pathSince(runcell.main, printStart);

    const pandas: PandasResult =
      options.pandasRuns === 0
        ? { available: false, error: "skipped (--pandas-runs 0)" }
        : await measurePandas(runcell, drivers, options);

    runcell.poolInfo.failed_runs = runcell.pool?.failed ?? 0;
    if (runcell.pool?.lastError)
      runcell.poolInfo.error = `the warm pool failed runs: ${runcell.pool.lastError}`;
    return {
      code: ONESHOT_CODE,
      runner: {
        path: printPath.path,
        warm_pool: runcell.poolInfo,
        runtime_dir: runcell.runtimeDir,
        cgroups: runcell.cgroups,
        limits_in_force: runcell.main.firstLimits,
      },
      commands: {
        bwrap: showCommand(bwrapArgv([], ONESHOT_CODE)),
        bwrap_pandas: showCommand(bwrapArgv(BWRAP_PANDAS_FLAGS, PANDAS_CODE)),
        python: showCommand(pythonArgv(ONESHOT_CODE)),
      },
      latency: {
        runs: options.runs,
        warmup: options.warmup,
        block: options.block,
        runner: latencyPath,
        engines: latency,
        runcell_duration_ms: roundSummary(summarize(runcellDurations)),
        p50_ratio_vs_bwrap: round(latency.runcell.summary.p50 / latency.bwrap.summary.p50),
        p95_ratio_vs_bwrap: round(latency.runcell.summary.p95 / latency.bwrap.summary.p95),
        cold_p50_ratio_vs_bwrap: ratioOf(latency.runcell_cold?.summary.p50, latency.bwrap.summary.p50),
        p50_ratio_vs_python: round(latency.runcell.summary.p50 / latency.python.summary.p50),
      },
      throughput: {
        clients: options.clients,
        runs: options.throughputRuns,
        runner: throughputPath,
        engines: throughput,
        ratio_vs_bwrap: round(throughput.runcell.runs_per_s / throughput.bwrap.runs_per_s),
        cold_ratio_vs_bwrap: ratioOf(throughput.runcell_cold?.runs_per_s, throughput.bwrap.runs_per_s),
        ratio_vs_python: round(throughput.runcell.runs_per_s / throughput.python.runs_per_s),
      },
      pandas,
    };
  } finally {
    await runcell.close();
  }
}

/** `import pandas` through every engine; runcell's warm Runner asks for the pandas profile. */
async function measurePandas(
  runcell: RuncellSetup,
  printDrivers: readonly Driver[],
  options: OneshotOptions,
): Promise<PandasResult> {
  const probe = await pandasVersion();
  if ("error" in probe) {
    options.log(`one-shot: pandas is not available: ${probe.error}`);
    return { available: false, error: probe.error };
  }
  const profile = runcell.pool?.hasProfile(PANDAS_PROFILE) ? PANDAS_PROFILE : null;
  if (runcell.pool && profile) {
    const pool = runcell.pool;
    try {
      runcell.poolInfo.start_ms[profile] = await timed(() => pool.warm(profile));
    } catch (error) {
      // The Runner still runs the code, on the cold path; the path reported shows it.
      if (wasInterrupted()) throw error;
      runcell.poolInfo.error = `the ${profile} profile did not start: ${(error as Error).message}`;
    }
  }
  const drivers: Driver[] = printDrivers.map((driver) =>
    driver.engine === "bwrap" ? spawnDriver("bwrap", (code) => bwrapArgv(BWRAP_PANDAS_FLAGS, code)) : driver,
  );
  const block = Math.max(1, Math.ceil(options.pandasRuns / 4));
  const warmup = 1;
  options.log(
    `one-shot: ${JSON.stringify(PANDAS_CODE)}, ${warmup} warm-up + ${options.pandasRuns} measured per engine, ` +
      `in blocks of ${block}${profile ? `, runcell with profile ${profile}` : ""}`,
  );
  const before = runcell.main.counts();
  const samples = await measureLatency(
    drivers,
    PANDAS_CODE,
    `${probe.version}\n`,
    { runs: options.pandasRuns, warmup, block },
    profile ?? undefined,
  );
  const path = pathSince(runcell.main, before);
  const engines = perEngine(drivers, samples, latencyOf);
  const label =
    path.path === "warm"
      ? `warm (profile ${profile})`
      : path.path === "mixed"
        ? `mixed: ${path.warm_runs} of ${path.runs} warm (profile ${profile})`
        : runcell.pool
          ? `cold (the warm pool did not serve: ${runcell.pool.lastError ?? runcell.poolInfo.error ?? "?"})`
          : `cold (no warm pool: ${runcell.poolInfo.error ?? "?"})`;
  return {
    available: true,
    version: probe.version,
    runs: options.pandasRuns,
    warmup,
    block,
    runner: { ...path, profile, label },
    engines,
    p50_ratio_vs_bwrap: round(engines.runcell.summary.p50 / engines.bwrap.summary.p50),
    cold_p50_ratio_vs_bwrap: ratioOf(engines.runcell_cold?.summary.p50, engines.bwrap.summary.p50),
    p50_ratio_vs_python: round(engines.runcell.summary.p50 / engines.python.summary.p50),
  };
}
