/**
 * Harness of the hostile-input suite for one-shot runs (shared/HOSTILE.md, sections A–G).
 *
 * Builds a Runner exactly as production does (real bubblewrap, real cgroups detected on this
 * host) on a private runtime directory and applies the suite's limits. Every run goes through
 * `run()`/`start()`, which afterwards checks that the host is unharmed by that run:
 *   - no process left running (or left as a zombie) as the host uid the run was given;
 *   - the run's `run-<id>` directory is gone from the runtime directory;
 *   - the run's cgroup directories are gone;
 *   - when no other run is in flight, the runner process holds no more fds than at the start.
 * `dispose()` (from afterAll) repeats the checks over everything the harness ever used.
 *
 * The uid and cgroups of each run are recorded through AsyncLocalStorage: the run's own async
 * chain reaches SandboxFactory.lease() and CgroupManager.create(), so concurrent cases in one
 * file never see each other's resources.
 *
 * Host capabilities are probed once per worker (probeHost, at collection time, so `it.skipIf`
 * can name what is missing); a case that needs a missing one is skipped with the reason in
 * its name, never passed silently.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { spawnSync } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { rmdir } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll } from "vitest";
import { InvalidArgumentError } from "../../src/errors.js";
import type { Execution } from "../../src/execution/types.js";
import { prepareRuntimeDir } from "../../src/kernels/kernel-manager.js";
import { Runner, type RunOnceOptions } from "../../src/runner/runner.js";
import type { SandboxPolicy } from "../../src/sandbox/bwrap-sandbox.js";
import { detectCgroups } from "../../src/sandbox/cgroups.js";
import type { CgroupManager, CgroupSupport } from "../../src/sandbox/cgroups-types.js";
import type { ResourceLimits } from "../../src/sandbox/limits.js";
import { startSpawnHelper } from "../../src/sandbox/managed-process.js";
import { SandboxFactory, type SandboxLease } from "../../src/sandbox/sandbox-factory.js";
import { type OwnedProcess, pollUntil, processesOwnedBy } from "../support/processes.js";
import { TrackingCgroups } from "../support/tracking-cgroups.js";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");

const MiB = 1024 * 1024;

/** The suite's limits (HOSTILE.md §2): every run gets these unless a case lowers one. */
export const SUITE_LIMITS: Readonly<ResourceLimits> = Object.freeze({
  timeMs: 5_000,
  cpuMs: 2_000,
  memoryBytes: 256 * MiB,
  pids: 64,
  outputBytes: 1 * MiB,
  fileBytes: 16 * MiB,
  openFiles: 256,
  tmpBytes: 64 * MiB,
});

/** Where the run's cgroups go: a parent of the suite's own, not production's `runcell`. */
const CGROUP_PARENT = "runcell-hostile";
/** How long a run's processes may take to disappear after runOnce returned (kills are async). */
const SURVIVOR_WAIT_MS = 3_000;
/** How long the final check waits for zombies reparented to the host's init to be reaped. */
const FINAL_WAIT_MS = 10_000;
/** fds the test worker itself may open or close between two samples (vitest's own IPC). */
const FD_SLACK = 2;

/** Appends one case's line to the JSON-lines report named by RUNCELL_HOSTILE_REPORT, if any. */
export function appendReport(line: Record<string, unknown>): void {
  const file = process.env.RUNCELL_HOSTILE_REPORT;
  if (file) appendFileSync(file, `${JSON.stringify(line)}\n`);
}

// ---------------------------------------------------------------------------------------------
// Host capabilities

export interface HostCaps {
  /** bubblewrap, setpriv and prlimit are installed and bwrap can create its namespaces. */
  bwrap: boolean;
  bwrapProblem: string;
  /** runcell runs as root, so each sandbox gets its own host uid from the pool. */
  root: boolean;
  cgroups: CgroupManager | null;
  cgroupSupport: CgroupSupport;
  cores: number;
}

export type Need = "bwrap" | "root" | "memory" | "pids" | "cpu" | "multicore";

let hostCaps: Promise<HostCaps> | undefined;

/** What this host offers the suite; probed once per worker process. */
export function probeHost(): Promise<HostCaps> {
  hostCaps ??= (async () => {
    let bwrapProblem = "";
    for (const tool of ["/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/prlimit"]) {
      if (!existsSync(tool)) bwrapProblem ||= `${tool} is not installed`;
    }
    if (!bwrapProblem) {
      const probe = spawnSync(
        "/usr/bin/bwrap",
        ["--unshare-all", "--ro-bind", "/", "/", "--die-with-parent", "/bin/true"],
        { timeout: 5_000, encoding: "utf8" },
      );
      if (probe.status !== 0)
        bwrapProblem = `bwrap cannot create namespaces: ${probe.stderr?.trim() || probe.error?.message}`;
    }
    const manager = await detectCgroups({ parentName: CGROUP_PARENT });
    return {
      bwrap: bwrapProblem === "",
      bwrapProblem,
      root: process.getuid?.() === 0,
      cgroups: manager.support.version === "none" ? null : manager,
      cgroupSupport: manager.support,
      cores: availableParallelism(),
    };
  })();
  return hostCaps;
}

function missing(host: HostCaps, need: Need): string | null {
  const notes = host.cgroupSupport.notes.join("; ");
  switch (need) {
    case "bwrap":
      return host.bwrap ? null : host.bwrapProblem;
    case "root":
      return host.root ? null : "runcell is not root, so sandboxes get no pooled host uid";
    case "memory":
      return host.cgroupSupport.memory ? null : `no memory cgroup controller (${notes})`;
    case "pids":
      return host.cgroupSupport.pids ? null : `no pids cgroup controller (${notes})`;
    case "cpu":
      return host.cgroupSupport.cpu ? null : `no CPU accounting cgroup (${notes})`;
    case "multicore":
      return host.cores >= 2 ? null : `only ${host.cores} CPU core, so CPU time cannot exceed wall time`;
  }
}

/**
 * Whether a case can run here. Use as `it.skipIf(c.skip)(\`name${c.label}\`, …)`: the label
 * names what is missing, so a skip always says why.
 */
export function needs(host: HostCaps, ...wanted: Need[]): { skip: boolean; label: string } {
  const reasons = wanted.map((n) => missing(host, n)).filter((r): r is string => r !== null);
  return reasons.length === 0
    ? { skip: false, label: "" }
    : { skip: true, label: ` [skipped: ${reasons.join("; ")}]` };
}

// ---------------------------------------------------------------------------------------------
// Per-run tracking

/** What one run used on the host, recorded while it starts. */
export interface Tracked {
  /** Host uids leased (one per run; none when not root). */
  uids: number[];
  /** The run's cgroup directories (one per v1 hierarchy, or the v2 one). */
  cgroupDirs: string[];
  /** Highest pids.current seen while sampling (null when not sampled). */
  peakPids: number | null;
}

const tracking = new AsyncLocalStorage<Tracked>();

class TrackingFactory extends SandboxFactory {
  override async lease(policy: SandboxPolicy): Promise<SandboxLease> {
    const lease = await super.lease(policy);
    if (lease.hostUid !== null) tracking.getStore()?.uids.push(lease.hostUid);
    return lease;
  }
}

// ---------------------------------------------------------------------------------------------
// The harness

export interface HostileRun {
  execution: Execution;
  tracked: Tracked;
}

/** A run in flight: what it has been given so far, and its outcome once host checks passed. */
export interface LiveRun {
  tracked: Tracked;
  /** Resolves after the host checks; rejects with the runner's InvalidArgumentError, or a failed check. */
  done: Promise<HostileRun>;
}

export interface RunProbes {
  /** Sample the run's pids.current every 20 ms into `tracked.peakPids`. */
  samplePids?: boolean;
}

export interface Harness {
  readonly host: HostCaps;
  readonly runtimeDir: string;
  readonly runner: Runner;
  /** First host uid of this harness's pool and its size. */
  readonly uidRange: { first: number; size: number };
  start(options: RunOnceOptions, probes?: RunProbes): LiveRun;
  run(options: RunOnceOptions, probes?: RunProbes): Promise<HostileRun>;
  /** Runs options that must be refused; returns the InvalidArgumentError (host checks done too). */
  rejects(options: RunOnceOptions): Promise<InvalidArgumentError>;
  /** Appends one JSON line to $RUNCELL_HOSTILE_REPORT (for trend charts); no-op when unset. */
  report(caseId: string, execution: Execution | null, extra?: Record<string, unknown>): void;
  /** Processes still owned by any uid of this harness's pool. */
  survivors(): OwnedProcess[];
  dispose(): Promise<void>;
}

/** Dead, and reparented to the host's init, which reaps it: not held by runcell. */
export function awaitingInit(p: OwnedProcess): boolean {
  return p.state === "Z" && p.ppid === 1;
}

function fdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

function uidPool(): { first: number; size: number } {
  // Distinct per worker (VITEST_POOL_ID) and per vitest process (ppid), so two workers, or two
  // suites run at once, never share a uid and never see each other's sandboxes as leftovers.
  const size = 1024;
  const pool = Number(process.env.VITEST_POOL_ID ?? 0) % 8;
  return { first: 300_000 + ((process.ppid % 1000) * 8 + pool) * size, size };
}

export async function createHarness(host: HostCaps): Promise<Harness> {
  const runtimeDir = mkdtempSync(join(tmpdir(), "runcell-hostile-"));
  await prepareRuntimeDir(runtimeDir, { sandboxed: true });
  const allCgroupDirs = new Set<string>();
  const uidRange = uidPool();
  const sandboxes = new TrackingFactory({
    mode: "bwrap",
    cgroups: host.cgroups
      ? new TrackingCgroups(host.cgroups, allCgroupDirs, (dirs) =>
          tracking.getStore()?.cgroupDirs.push(...dirs),
        )
      : null,
    runtimeDir,
    firstUid: uidRange.first,
    uidPoolSize: uidRange.size,
  });
  const runner = new Runner({ sandboxes, runtimeDir, defaults: { ...SUITE_LIMITS } });
  const inPool = (uid: number) => uid >= uidRange.first && uid < uidRange.first + uidRange.size;
  let inFlight = 0;
  // The spawn helper's own descriptors (its pipes, its socket) are runcell's for good.
  await startSpawnHelper();
  let fdBaseline = fdCount();

  const checkRun = async (tracked: Tracked, execution: Execution | null): Promise<void> => {
    const problems: string[] = [];
    // A zombie whose parent is the host's init is dead and init's to reap (bwrap's pid 1 is
    // orphaned when the outer bwrap exits first); anything else is a survivor.
    const survivors = () =>
      processesOwnedBy((uid) => tracked.uids.includes(uid)).filter((p) => !awaitingInit(p));
    if (tracked.uids.length > 0 && !(await pollUntil(() => survivors().length === 0, SURVIVOR_WAIT_MS))) {
      problems.push(`processes survived the run: ${JSON.stringify(survivors())}`);
    }
    if (execution && existsSync(join(runtimeDir, `run-${execution.id}`))) {
      problems.push(`run directory run-${execution.id} was left in ${runtimeDir}`);
    }
    const cgroupsLeft = tracked.cgroupDirs.filter((dir) => existsSync(dir));
    if (cgroupsLeft.length > 0) problems.push(`cgroups were left: ${cgroupsLeft.join(", ")}`);
    if (inFlight === 0) {
      const fds = fdCount();
      if (fds > fdBaseline + FD_SLACK)
        problems.push(`the runner holds ${fds} fds, ${fds - fdBaseline} more than at the start`);
    }
    if (problems.length > 0) throw new Error(`host harmed: ${problems.join("; ")}`);
  };

  const start = (options: RunOnceOptions, probes: RunProbes = {}): LiveRun => {
    const tracked: Tracked = { uids: [], cgroupDirs: [], peakPids: null };
    inFlight++;
    let sampler: NodeJS.Timeout | undefined;
    if (probes.samplePids) {
      sampler = setInterval(() => {
        for (const dir of tracked.cgroupDirs) {
          try {
            const current = Number(readFileSync(join(dir, "pids.current"), "utf8"));
            if (Number.isFinite(current)) tracked.peakPids = Math.max(tracked.peakPids ?? 0, current);
          } catch {
            // not the pids hierarchy, or already removed
          }
        }
      }, 20);
    }
    const done = (async () => {
      let execution: Execution | null = null;
      let thrown: unknown;
      try {
        execution = await tracking.run(tracked, () => runner.runOnce(options));
      } catch (error) {
        thrown = error;
      } finally {
        clearInterval(sampler);
        inFlight--;
      }
      await checkRun(tracked, execution);
      if (thrown !== undefined) throw thrown;
      return { execution: execution!, tracked };
    })();
    return { tracked, done };
  };

  const harness: Harness = {
    host,
    runtimeDir,
    runner,
    uidRange,
    start,
    run: (options, probes) => start(options, probes).done,
    rejects: async (options) => {
      try {
        const { execution } = await start(options).done;
        throw new Error(`expected an InvalidArgumentError, the run ended ${execution.status}`);
      } catch (error) {
        if (error instanceof InvalidArgumentError) return error;
        throw error;
      }
    },
    report: (caseId, execution, extra = {}) => {
      const e = execution;
      const line = {
        case: caseId,
        ...(e && {
          status: e.status,
          limit: e.limit,
          category: e.error?.category ?? null,
          error: e.error?.name ?? null,
          exit_code: e.exit_code,
          signal: e.signal,
          truncated: e.truncated,
          stdout_bytes: e.stdout_bytes,
          stderr_bytes: e.stderr_bytes,
          dropped_bytes: e.dropped_bytes,
          cpu_ms: e.cpu_ms,
          peak_memory_bytes: e.peak_memory_bytes,
          duration_ms: e.duration_ms,
        }),
        ...extra,
      };
      appendReport(line);
    },
    survivors: () => processesOwnedBy(inPool),
    dispose: async () => {
      const problems: string[] = [];
      // Everything, zombies included, must be gone by now (init reaps them within seconds).
      if (!(await pollUntil(() => processesOwnedBy(inPool).length === 0, FINAL_WAIT_MS)))
        problems.push(`processes of the sandbox uids survived: ${JSON.stringify(processesOwnedBy(inPool))}`);
      const runDirs = readdirSync(runtimeDir).filter((name) => name.startsWith("run-"));
      if (runDirs.length > 0) problems.push(`run directories were left: ${runDirs.join(", ")}`);
      const cgroupsLeft = [...allCgroupDirs].filter((dir) => existsSync(dir));
      if (cgroupsLeft.length > 0) problems.push(`cgroups were left: ${cgroupsLeft.join(", ")}`);
      const fds = fdCount();
      if (fds > fdBaseline + FD_SLACK)
        problems.push(`the runner holds ${fds} fds, ${fds - fdBaseline} more than at the start`);
      rmSync(runtimeDir, { recursive: true, force: true });
      // The parent groups stay when another worker's runs still use them.
      for (const parent of new Set([...allCgroupDirs].map((dir) => dirname(dir)))) {
        await rmdir(parent).catch(() => undefined);
      }
      if (problems.length > 0) throw new Error(`host harmed: ${problems.join("; ")}`);
    },
  };
  // One run first, so lazily opened runner state (identity files…) is part of the fd baseline.
  if (host.bwrap) {
    await harness.run({ language: "python", code: "pass" });
    fdBaseline = fdCount();
  }
  return harness;
}

/**
 * A harness for the calling test file: created in beforeAll, checked and removed in afterAll.
 * The returned object forwards to it, so it can be declared at module level.
 */
export function useHarness(host: HostCaps): Harness {
  let instance: Harness | undefined;
  beforeAll(async () => {
    instance = await createHarness(host);
  });
  afterAll(async () => {
    await instance?.dispose();
  });
  const get = (): Harness => {
    if (!instance) throw new Error("the harness is used outside a test");
    return instance;
  };
  return {
    get host() {
      return host;
    },
    get runtimeDir() {
      return get().runtimeDir;
    },
    get runner() {
      return get().runner;
    },
    get uidRange() {
      return get().uidRange;
    },
    start: (options, probes) => get().start(options, probes),
    run: (options, probes) => get().run(options, probes),
    rejects: (options) => get().rejects(options),
    report: (caseId, execution, extra) => get().report(caseId, execution, extra),
    survivors: () => get().survivors(),
    dispose: () => get().dispose(),
  };
}

/** One-line summary of a record for assertion messages. */
export function describeRun(e: Execution): string {
  return JSON.stringify({
    status: e.status,
    limit: e.limit,
    error: e.error && { name: e.error.name, category: e.error.category, value: e.error.value.slice(0, 200) },
    exit_code: e.exit_code,
    signal: e.signal,
    stdout: e.stdout.slice(0, 300),
    stderr: e.stderr.slice(-300),
  });
}

/** The lines a Python probe printed as `KEY=json`, parsed. */
export function probeResults(e: Execution): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const line of e.stdout.split("\n")) {
    const at = line.indexOf("=");
    if (at <= 0) continue;
    try {
      out[line.slice(0, at)] = JSON.parse(line.slice(at + 1));
    } catch {
      // not a probe line
    }
  }
  return out;
}
