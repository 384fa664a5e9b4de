/**
 * Harness of the kernel-side hostile cases (shared/HOSTILE.md section H, and the kernel variants
 * of #7, #11, #14, #21, #29, #30): a real ipykernel (kernelspec `python3`) confined by
 * bubblewrap exactly as `runcell run` starts it — a leased BwrapSandbox with the kernel policy
 * (no network, no per-process CPU rlimit), the sandboxed kernel environment, the ipc transport —
 * with real cgroups detected on this host.
 *
 * Everything is private to the test process: a temporary runtime dir (0711, below a 0711
 * directory in the system temp dir, so the pooled uids can reach their socket dirs), a cgroup
 * parent named after the process id, and a host uid range derived from the process id (far
 * from the one-shot harness's). Each kernel records the cgroup directories of every process it
 * has had (through AsyncLocalStorage, since one factory and one cgroup manager serve them all),
 * so cases can check that a restart or a dispose removed them.
 *
 * afterAll disposes what is still running and then checks the host: no process of the uid range
 * left, no cgroup directory left; it then removes the runtime dir and the cgroup parents.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import type { Execution } from "../../../src/execution/types.js";
import { KernelExecutor } from "../../../src/execution/kernel-executor.js";
import type { Kernel, KernelStatus, ShutdownPath } from "../../../src/kernels/kernel.js";
import { KernelManager, prepareRuntimeDir } from "../../../src/kernels/kernel-manager.js";
import { loadConfig } from "../../../src/config/config.js";
import type { SandboxPolicy } from "../../../src/sandbox/bwrap-sandbox.js";
import { detectCgroups } from "../../../src/sandbox/cgroups.js";
import { HostSandbox } from "../../../src/sandbox/host-sandbox.js";
import { resolveLimits, type ResourceLimits } from "../../../src/sandbox/limits.js";
import { SandboxFactory } from "../../../src/sandbox/sandbox-factory.js";
import type { Sandbox, SandboxProcess, SpawnOptions } from "../../../src/sandbox/types.js";
import { type OwnedProcess, pollUntil, processesOwnedBy } from "../../support/processes.js";
import { TrackingCgroups } from "../../support/tracking-cgroups.js";
import { appendReport, awaitingInit, type HostCaps, needs, type Need } from "../harness.js";

/** Where a confined kernel keeps its writable state, as `runcell run` sets it (src/cli/commands/run.ts). */
export const SANDBOXED_KERNEL_ENV: Readonly<Record<string, string>> = Object.freeze({
  PATH: "/usr/local/bin:/usr/bin:/bin",
  HOME: "/tmp",
  IPYTHONDIR: "/tmp/.ipython",
  MPLCONFIGDIR: "/tmp/.matplotlib",
});

/** This test process's cgroup parent (inside its own cgroup): never shared with another process. */
export const CGROUP_PARENT = `runcell-hostile-kernels-${process.pid}`;
/** How long processes may take to disappear once runcell has let go of them (kills are async). */
export const GONE_WAIT_MS = 5_000;
/** Backstop deadline of every kernel start. */
const START_TIMEOUT_MS = 30_000;

/** Host uids of this test process: distinct per process, far above the one-shot harness's pool. */
export function kernelUidRange(): { first: number; size: number } {
  const size = 16;
  return { first: 1_000_000_000 + (process.pid % 4_000_000) * size, size };
}

let kernelspecProblem: Promise<string | null> | undefined;

/** Why the python3 kernelspec cannot be used here, or null. */
function probeKernelspec(): Promise<string | null> {
  kernelspecProblem ??= (async () => {
    try {
      const manager = new KernelManager({
        jupyterPaths: loadConfig(process.env).jupyterPaths,
        runtimeDir: tmpdir(),
        env: {},
        sandbox: new HostSandbox(),
      });
      await manager.getKernelspec("python3");
      return null;
    } catch (error) {
      return `no python3 kernelspec (${(error as Error).message.split("\n")[0]})`;
    }
  })();
  return kernelspecProblem;
}

/** Like `needs()` of the one-shot harness, plus the python3 kernelspec. */
export async function kernelNeeds(
  host: HostCaps,
  ...wanted: Need[]
): Promise<{ skip: boolean; label: string }> {
  const base = needs(host, "bwrap", ...wanted);
  const problem = await probeKernelspec();
  if (!problem) return base;
  return {
    skip: true,
    label: base.skip ? base.label.replace(/]$/, `; ${problem}]`) : ` [skipped: ${problem}]`,
  };
}

// ---------------------------------------------------------------------------------------------
// cgroup tracking per kernel

/** Where the cgroups created during one kernel's spawns are recorded. */
const spawning = new AsyncLocalStorage<string[][]>();

/** Runs each spawn of one kernel in its own tracking context. */
class TrackedSandbox implements Sandbox {
  readonly #inner: Sandbox;
  readonly #spawns: string[][];
  constructor(inner: Sandbox, spawns: string[][]) {
    this.#inner = inner;
    this.#spawns = spawns;
  }
  get kind(): string {
    return this.#inner.kind;
  }
  get kernelTransport(): "tcp" | "ipc" {
    return this.#inner.kernelTransport;
  }
  get forwardsSignals(): boolean {
    return this.#inner.forwardsSignals;
  }
  spawn(options: SpawnOptions): Promise<SandboxProcess> {
    return spawning.run(this.#spawns, () => this.#inner.spawn(options));
  }
}

// ---------------------------------------------------------------------------------------------
// The harness

export interface SandboxedKernel {
  kernel: Kernel;
  executor: KernelExecutor;
  /** The pooled host uid its processes run as; null when runcell is not root. */
  hostUid: number | null;
  /** The cgroup directories of each process the kernel has had, oldest first. */
  spawns: string[][];
  /** Live processes (zombies awaiting init excluded) running as `hostUid`. */
  processes(): OwnedProcess[];
  /** Disposes the executor and the kernel and returns the uid to the pool. Idempotent. */
  dispose(): Promise<ShutdownPath>;
}

export interface KernelStartRequest {
  limits?: Partial<ResourceLimits>;
  /** How long an interrupted execution may stay busy before the kernel is restarted. Default 2000. */
  interruptGraceMs?: number;
}

export interface KernelHarness {
  readonly host: HostCaps;
  readonly runtimeDir: string;
  readonly uidRange: { first: number; size: number };
  start(request?: KernelStartRequest): Promise<SandboxedKernel>;
  /** Processes of this harness's whole uid range (zombies included). */
  poolProcesses(): OwnedProcess[];
  /** Appends one JSON line to $RUNCELL_HOSTILE_REPORT (for trend charts); no-op when unset. */
  report(caseId: string, execution: Execution | null, extra?: Record<string, unknown>): void;
}

/** The uid range a child process (see owner-child.ts) may use: the top of this harness's range. */
export const CHILD_UIDS = 4;

export function useKernelHarness(host: HostCaps): KernelHarness {
  const uidRange = kernelUidRange();
  const inRange = (uid: number) => uid >= uidRange.first && uid < uidRange.first + uidRange.size;
  let dir: string | undefined;
  let runtimeDir: string | undefined;
  let factory: SandboxFactory | undefined;
  let manager: KernelManager | undefined;
  const allCgroupDirs = new Set<string>();
  const live = new Set<SandboxedKernel>();

  beforeAll(async () => {
    if (!host.bwrap) return;
    dir = mkdtempSync(join(tmpdir(), "runcell-hostile-kernels-"));
    chmodSync(dir, 0o711);
    runtimeDir = join(dir, "rt");
    await prepareRuntimeDir(runtimeDir, { sandboxed: true });
    const cgroups = await detectCgroups({ parentName: CGROUP_PARENT });
    factory = new SandboxFactory({
      mode: "bwrap",
      cgroups:
        cgroups.support.version === "none"
          ? null
          : new TrackingCgroups(cgroups, allCgroupDirs, (dirs) => spawning.getStore()?.push(dirs)),
      runtimeDir,
      firstUid: uidRange.first,
      // The top of the range is left to child processes (owner-child.ts).
      uidPoolSize: uidRange.size - CHILD_UIDS,
    });
    const config = loadConfig(process.env);
    manager = new KernelManager({
      jupyterPaths: config.jupyterPaths,
      runtimeDir,
      env: config.kernelEnv,
      sandbox: new HostSandbox(), // never used: every start passes its leased sandbox
      defaults: { startTimeoutMs: START_TIMEOUT_MS },
    });
  });

  afterAll(async () => {
    const problems: string[] = [];
    try {
      await Promise.all([...live].map((k) => k.dispose()));
      const left = () => processesOwnedBy(inRange).filter((p) => !awaitingInit(p));
      if (!(await pollUntil(() => left().length === 0, GONE_WAIT_MS)))
        problems.push(`processes of the kernel uids survived: ${JSON.stringify(left())}`);
      const cgroupsLeft = [...allCgroupDirs].filter((d) => existsSync(d));
      if (cgroupsLeft.length > 0) problems.push(`cgroups were left: ${cgroupsLeft.join(", ")}`);
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
      for (const parent of new Set([...allCgroupDirs].map((d) => dirname(d)))) {
        await rmdir(parent).catch(() => undefined);
      }
    }
    if (problems.length > 0) throw new Error(`host harmed: ${problems.join("; ")}`);
  });

  const start = async (request: KernelStartRequest = {}): Promise<SandboxedKernel> => {
    if (!factory || !manager) throw new Error("the kernel harness is used outside a test, or without bwrap");
    const policy: SandboxPolicy = {
      limits: resolveLimits(request.limits ?? {}),
      network: false,
      processCpuLimit: false,
    };
    const lease = await factory.lease(policy);
    const spawns: string[][] = [];
    let kernel: Kernel;
    try {
      kernel = await manager.start({
        name: "python3",
        sandbox: new TrackedSandbox(lease.sandbox, spawns),
        envOverrides: SANDBOXED_KERNEL_ENV,
      });
    } catch (error) {
      lease.release();
      throw error;
    }
    const executor = new KernelExecutor(kernel, { interruptGraceMs: request.interruptGraceMs ?? 2_000 });
    let disposed: Promise<ShutdownPath> | undefined;
    const handle: SandboxedKernel = {
      kernel,
      executor,
      hostUid: lease.hostUid,
      spawns,
      processes: () =>
        lease.hostUid === null
          ? []
          : processesOwnedBy((uid) => uid === lease.hostUid).filter((p) => !awaitingInit(p)),
      dispose: () => {
        disposed ??= (async () => {
          await executor.dispose();
          const path = await kernel.dispose();
          lease.release();
          live.delete(handle);
          return path;
        })();
        return disposed;
      },
    };
    live.add(handle);
    return handle;
  };

  return {
    host,
    get runtimeDir() {
      if (!runtimeDir) throw new Error("the kernel harness is used outside a test");
      return runtimeDir;
    },
    uidRange,
    start,
    poolProcesses: () => processesOwnedBy(inRange),
    report: (caseId, execution, extra = {}) => {
      const e = execution;
      const line = {
        case: caseId,
        ...(e && {
          status: e.status,
          limit: e.limit,
          category: e.error?.category ?? null,
          error: e.error?.name ?? null,
          execution_count: e.execution_count,
          duration_ms: e.duration_ms,
        }),
        ...extra,
      };
      appendReport(line);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Small helpers for the cases

/** Resolves when the kernel reaches `status`; rejects after `timeoutMs` (a backstop, not a measure). */
export function waitForStatus(kernel: Kernel, status: KernelStatus, timeoutMs: number): Promise<void> {
  if (kernel.status === status) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(
        new Error(`the kernel did not become ${status} within ${timeoutMs} ms (it is ${kernel.status})`),
      );
    }, timeoutMs);
    const unsubscribe = kernel.onStatus((now) => {
      if (now !== status) return;
      clearTimeout(timer);
      unsubscribe();
      resolve();
    });
  });
}

/** The `text/plain` of the execution's result output, if it has one. */
export function resultText(execution: Execution): string | undefined {
  const result = execution.outputs.find((output) => output.type === "result");
  return result?.type === "result" ? (result.data["text/plain"] as string | undefined) : undefined;
}

/** One-line summary of a record for assertion messages. */
export function describeExecution(e: Execution): string {
  return JSON.stringify({
    status: e.status,
    limit: e.limit,
    error: e.error && { name: e.error.name, category: e.error.category, value: e.error.value.slice(0, 300) },
    stdout: e.stdout.slice(0, 300),
    stderr: e.stderr.slice(-300),
  });
}

/** A `Key:` field of /proc/<pid>/status, or null when the process is gone. */
export function procStatusField(pid: number, key: string): string | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return new RegExp(`^${key}:\\s*(.*)$`, "m").exec(status)?.[1]?.trim() ?? null;
  } catch {
    return null;
  }
}

/** The `oom_kill` count of a group's memory controller (v1 memory.oom_control or v2 memory.events). */
export function oomKills(dirs: readonly string[]): number | null {
  for (const dir of dirs) {
    for (const file of ["memory.oom_control", "memory.events"]) {
      let text: string;
      try {
        text = readFileSync(join(dir, file), "utf8");
      } catch {
        continue;
      }
      const count = /^oom_kill (\d+)$/m.exec(text)?.[1];
      if (count !== undefined) return Number(count);
    }
  }
  return null;
}

/** The pids in a group (its first readable cgroup.procs), or null when none is readable. */
export function groupMembers(dirs: readonly string[]): number[] | null {
  for (const dir of dirs) {
    try {
      return readFileSync(join(dir, "cgroup.procs"), "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map(Number);
    } catch {
      // removed, or not readable
    }
  }
  return null;
}

/** pids.current of a group's pids controller, or null. */
export function pidsCurrent(dirs: readonly string[]): number | null {
  for (const dir of dirs) {
    try {
      const value = Number(readFileSync(join(dir, "pids.current"), "utf8"));
      if (Number.isFinite(value)) return value;
    } catch {
      // not the pids hierarchy, or already removed
    }
  }
  return null;
}
