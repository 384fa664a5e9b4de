import { randomUUID } from "node:crypto";
import { chmod, copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import type { CgroupHandle, CgroupManager, CgroupStats } from "../sandbox/cgroups-types.js";
import type { ResourceLimits } from "../sandbox/limits.js";
import { DEFAULT_CEILINGS } from "../sandbox/limits.js";
import type { SandboxFactory, SandboxLease } from "../sandbox/sandbox-factory.js";
import type { ProcessExit, SandboxProcess } from "../sandbox/types.js";
import { deadlineSignal, raceSignal } from "../util/abort.js";

/** Modules a warm interpreter imports once, so runs that use them start at once. */
export interface WarmProfile {
  /** Python modules to import in the fork server, e.g. `["numpy", "pandas"]`. */
  preload: string[];
}

/** The profiles every pool has unless configured otherwise. */
export const DEFAULT_PROFILES: Readonly<Record<string, WarmProfile>> = Object.freeze({
  default: { preload: [] },
  pandas: { preload: ["numpy", "pandas"] },
});

export interface WarmPoolOptions {
  sandboxes: SandboxFactory;
  cgroups: CgroupManager;
  /** runcell's runtime dir (0711): the server script is copied here for the sandbox to read. */
  runtimeDir: string;
  python: string;
  profiles?: Record<string, WarmProfile>;
  /** How long a fork server may take to import its profile and say it is ready. Default 60 s. */
  startTimeoutMs?: number;
  /** Pre-started runs kept ready per profile. Default 4. */
  standbys?: number;
  /**
   * The memory, pids and tmpfs limits standbys are prepared with (usually the runner's
   * defaults). A run asking for other values of these is prepared on demand instead.
   */
  standbyLimits: Pick<ResourceLimits, "memoryBytes" | "pids" | "tmpBytes">;
}

/** What a warm run needs. */
export interface WarmRunRequest {
  code: string;
  env: Record<string, string>;
  limits: ResourceLimits;
}

const ZYGOTE_SOURCE = fileURLToPath(new URL("../../assets/zygote.py", import.meta.url));

/** How long a run's process may take to end after reporting its exit, before it is killed. */
const REAP_GRACE_MS = 200;

/** Whether `promise` settles within `ms` (the timer does not keep the process alive). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Standbys prepared at once per profile. */
const REFILL_PARALLELISM = 2;

/** Emptied cgroups kept for reuse (beyond these, a finished run's cgroup is removed). */
const MAX_SPARE_CGROUPS = 8;

type ZygoteEvent =
  | { ev: "ready"; pid: number }
  | { ev: "forked"; id: string; pid: number }
  | { ev: "failed"; id: string; message: string }
  | { ev: "out"; id: string; stream: "stdout" | "stderr"; data: string }
  | { ev: "exit"; id: string; code: number }
  | { ev: "reaped"; id: string };

/** One run forked from a fork server, seen through the same interface as any sandboxed process. */
class WarmRun implements SandboxProcess {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdin = null;
  readonly exited: Promise<ProcessExit>;
  exitStatus: ProcessExit | undefined;
  pid = -1;
  /** Its server died before the run ended: nothing it reports is the code's own doing. */
  lost = false;
  #resolveExit!: (exit: ProcessExit) => void;
  /** Settles once the run's process is gone (it may report its exit a moment before). */
  readonly reaped: Promise<void>;
  #resolveReaped!: () => void;
  #disposed: Promise<void> | undefined;
  #lastStats: CgroupStats | null = null;

  /** `release` takes the cgroup back once the run is over (recycled or removed). */
  constructor(
    readonly cgroup: CgroupHandle,
    readonly release: (cgroup: CgroupHandle) => Promise<void> = (cgroup) => cgroup.dispose(),
  ) {
    this.exited = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
    this.reaped = new Promise((resolve) => {
      this.#resolveReaped = resolve;
    });
  }

  #isReaped = false;

  get isReaped(): boolean {
    return this.#isReaped;
  }

  markReaped(): void {
    this.#isReaped = true;
    this.#resolveReaped();
  }

  finish(code: number): void {
    if (this.exitStatus) return;
    this.stdout.end();
    this.stderr.end();
    // Like bubblewrap: 128+n for a run killed by signal n.
    this.exitStatus = { code, signal: null };
    this.#resolveExit(this.exitStatus);
  }

  stderrTail(): string {
    return "";
  }

  async usage(): Promise<CgroupStats | null> {
    this.#lastStats = await this.cgroup.stats().catch(() => this.#lastStats);
    return this.#lastStats;
  }

  signalGroup(signal: NodeJS.Signals): void {
    if (this.pid > 0) {
      try {
        process.kill(this.pid, signal);
      } catch {
        // gone already
      }
    }
    // pid 1 of the run dies with its parent (PDEATHSIG), and with it the whole pid namespace;
    // the cgroup sweep catches anything in between.
    if (signal === "SIGKILL") void this.cgroup.killAll().catch(() => undefined);
  }

  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      if (!this.exitStatus) this.signalGroup("SIGKILL");
      await this.exited;
      // A run reports its exit just before its process ends; give it a moment, then make sure
      // (the code could have written that report itself and gone on running).
      if (!(await settlesWithin(this.reaped, REAP_GRACE_MS))) {
        this.signalGroup("SIGKILL");
        await settlesWithin(this.reaped, 5_000);
      }
      // Once pid 1 is gone the kernel kills the rest of its namespace; release() removes the
      // group (killing any straggler) unless it is already empty and can be reused.
      await this.release(this.cgroup).catch(() => undefined);
    })();
    return this.#disposed;
  }
}

/** A pre-started run waiting for its code. */
interface Standby {
  id: string;
  run: WarmRun;
  tmpBytes: number;
  zygote: Zygote;
}

/** One fork server (one profile): a sandboxed Python that has imported the profile's modules. */
class Zygote {
  readonly ready: Promise<void>;
  readonly #proc: SandboxProcess;
  readonly #lease: SandboxLease;
  readonly #runs = new Map<
    string,
    { run: WarmRun; forked: (pid: number) => void; failed: (e: Error) => void }
  >();
  #dead = false;

  constructor(proc: SandboxProcess, lease: SandboxLease, startTimeoutMs: number) {
    this.#proc = proc;
    this.#lease = lease;
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    const ready = new Promise<void>((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    let buffered = "";
    proc.stdout!.setEncoding("utf8");
    proc.stdout!.on("data", (chunk: string) => {
      buffered += chunk;
      let newline = buffered.indexOf("\n");
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf("\n");
        if (!line) continue;
        let event: ZygoteEvent;
        try {
          event = JSON.parse(line) as ZygoteEvent;
        } catch {
          continue;
        }
        if (event.ev === "ready") readyResolve();
        else this.#onEvent(event);
      }
    });
    let stderr = "";
    proc.stderr!.setEncoding("utf8");
    proc.stderr!.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-8192);
    });
    void proc.exited.then((exit) => {
      this.#dead = true;
      const error = new Error(
        `the warm interpreter exited (code ${exit.code ?? "none"}, signal ${exit.signal ?? "none"})${stderr ? `: ${stderr.trim()}` : ""}`,
      );
      readyReject(error);
      for (const [, pending] of this.#runs) {
        pending.failed(error);
        pending.run.lost = true;
        pending.run.finish(125);
        // Its runs died with it (parent-death signal).
        pending.run.markReaped();
      }
      this.#runs.clear();
      // Its sandbox's own cgroup goes with it, whether it was stopped or died.
      void proc.dispose(0).catch(() => undefined);
      this.#lease.release();
    });
    this.ready = raceSignal(ready, deadlineSignal(startTimeoutMs), "starting the warm interpreter");
    this.ready.catch(() => undefined);
  }

  get alive(): boolean {
    return !this.#dead;
  }

  #onEvent(event: Exclude<ZygoteEvent, { ev: "ready" }>): void {
    const pending = this.#runs.get(event.id);
    if (!pending) return;
    if (event.ev === "forked") {
      pending.run.pid = event.pid;
      pending.forked(event.pid);
    } else if (event.ev === "failed") {
      this.#runs.delete(event.id);
      pending.failed(new Error(`the warm interpreter could not create a run: ${event.message}`));
      pending.run.finish(125);
    } else if (event.ev === "out") {
      (event.stream === "stderr" ? pending.run.stderr : pending.run.stdout).write(
        Buffer.from(event.data, "base64"),
      );
    } else if (event.ev === "exit") {
      // Its output is all in; its process may still be ending ("reaped" follows).
      pending.run.finish(event.code);
      if (pending.run.isReaped) this.#runs.delete(event.id);
    } else if (event.ev === "reaped") {
      pending.run.markReaped();
      if (pending.run.exitStatus) this.#runs.delete(event.id);
    }
  }

  #send(message: object): void {
    this.#proc.stdin!.write(`${JSON.stringify(message)}\n`);
  }

  /**
   * Pre-starts a run: pid 1 of its own namespaces, mounting its private filesystems, then
   * waiting for code. Resolves once the process is in `cgroup`: its code (and so any process
   * it forks) may only come after that.
   */
  async prefork(
    cgroup: CgroupHandle,
    tmpBytes: number,
    release?: (cgroup: CgroupHandle) => Promise<void>,
  ): Promise<Standby> {
    await this.ready;
    const id = randomUUID();
    const run = new WarmRun(cgroup, release);
    const forked = new Promise<number>((resolve, reject) => {
      this.#runs.set(id, { run, forked: resolve, failed: reject });
    });
    this.#send({ op: "prefork", id, tmp_bytes: tmpBytes });
    const pid = await raceSignal(forked, deadlineSignal(10_000), "forking a warm run");
    try {
      // Before the run may continue: every process it will ever have is born in its cgroup.
      await cgroup.adopt(pid);
    } catch (error) {
      this.#send({ op: "abort", id });
      throw error;
    }
    return { id, run, tmpBytes, zygote: this };
  }

  /** Hands a standby its code; its output and exit arrive on the standby's run. */
  assign(standby: Standby, request: WarmRunRequest): WarmRun {
    const { limits } = request;
    this.#send({
      op: "assign",
      id: standby.id,
      code: request.code,
      env: request.env,
      limits: {
        cpu_s: Math.max(1, Math.ceil(limits.cpuMs / 1000)),
        file_bytes: limits.fileBytes,
        open_files: limits.openFiles,
      },
    });
    return standby.run;
  }

  /** Ends a standby that will not be used. */
  abort(standby: Standby): void {
    if (!this.#dead) this.#send({ op: "abort", id: standby.id });
  }

  async dispose(): Promise<void> {
    this.#proc.stdin?.end();
    await this.#proc.dispose(1000);
  }
}

/**
 * Warm interpreters for one-shot Python runs: per profile, one sandboxed fork server that has
 * already imported the profile's modules. A run is a fresh fork that confines itself (own
 * cgroup, user, mount, pid, network, ipc and uts namespaces, private tmpfs, rlimits, no
 * capabilities) before any of its code runs, and that nothing outlives; the server never runs
 * user code, so no state passes from one run to the next. Servers that die are replaced on the
 * next run.
 */
export class WarmPool {
  readonly #options: WarmPoolOptions;
  readonly #profiles: Record<string, WarmProfile>;
  /** One fork server per profile, as a promise so that concurrent first runs share one start. */
  readonly #zygotes = new Map<string, { starting: Promise<Zygote>; started?: Zygote }>();
  #script: Promise<string> | undefined;
  readonly #standbys = new Map<string, Standby[]>();
  /** Releases of finished runs' cgroups under way. */
  readonly #releasing = new Set<Promise<void>>();
  /** Emptied cgroups with the standby limits, ready for the next standbys. */
  readonly #spareCgroups: CgroupHandle[] = [];
  /** Standby preparations in flight per profile; dispose() waits for them. */
  readonly #preparing = new Map<string, Set<Promise<void>>>();
  #disposed = false;

  constructor(options: WarmPoolOptions) {
    this.#options = options;
    this.#profiles = options.profiles ?? { ...DEFAULT_PROFILES };
  }

  /** Profile names this pool serves. */
  get profiles(): string[] {
    return Object.keys(this.#profiles);
  }

  hasProfile(name: string): boolean {
    return Object.hasOwn(this.#profiles, name);
  }

  /** Starts the fork server of `profile` and its standbys now rather than on its first run. */
  async warm(profile = "default"): Promise<void> {
    await (
      await this.#zygote(profile)
    ).ready;
    this.#replenish(profile);
  }

  /** Runs `request` in a fresh confined fork of the profile's server. */
  async spawn(profile: string, request: WarmRunRequest): Promise<SandboxProcess> {
    const zygote = await this.#zygote(profile);
    const fits =
      request.limits.memoryBytes === this.#options.standbyLimits.memoryBytes &&
      request.limits.pids === this.#options.standbyLimits.pids &&
      request.limits.tmpBytes === this.#options.standbyLimits.tmpBytes;
    let standby: Standby | undefined;
    if (fits) {
      const queue = this.#standbys.get(profile) ?? [];
      while (queue.length > 0 && !standby) {
        const next = queue.shift()!;
        if (next.zygote === zygote && next.zygote.alive && !next.run.exitStatus) standby = next;
        else void next.run.dispose();
      }
    }
    standby ??= await this.#prepare(zygote, fits ? this.#options.standbyLimits : request.limits, fits);
    if (fits) this.#replenish(profile);
    return zygote.assign(standby, request);
  }

  /**
   * A standby with its own cgroup, prepared now. Standbys with the standby limits reuse the
   * emptied cgroups of finished runs (recycled: counters restarted) instead of making new ones.
   */
  async #prepare(
    zygote: Zygote,
    limits: Pick<ResourceLimits, "memoryBytes" | "pids" | "tmpBytes">,
    reusable: boolean,
  ): Promise<Standby> {
    const cgroup =
      (reusable ? this.#spareCgroups.pop() : undefined) ??
      (await this.#options.cgroups.create(`warm-${randomUUID()}`, {
        memoryBytes: limits.memoryBytes,
        // pid 1 runs the code itself: the whole tree is the code's.
        pids: limits.pids,
      }));
    try {
      return await zygote.prefork(cgroup, limits.tmpBytes, reusable ? this.#releaseCgroup : undefined);
    } catch (error) {
      await cgroup.dispose().catch(() => undefined);
      throw error;
    }
  }

  /** Keeps a finished run's cgroup for the next standby when it can be reused, else removes it. */
  readonly #releaseCgroup = (cgroup: CgroupHandle): Promise<void> => {
    const releasing = (async () => {
      const room = () => !this.#disposed && this.#spareCgroups.length < MAX_SPARE_CGROUPS;
      // Checked again after the recycle: releases that ran side by side would otherwise all
      // have seen room for themselves and kept more spares than the cap.
      if (room() && (await cgroup.recycle()) && room()) {
        this.#spareCgroups.push(cgroup);
        return;
      }
      await cgroup.dispose();
    })();
    // dispose() waits for releases under way, so that no group outlives the pool.
    this.#releasing.add(releasing);
    void releasing.finally(() => this.#releasing.delete(releasing)).catch(() => undefined);
    return releasing;
  };

  /**
   * Refills a profile's standbys in the background, REFILL_PARALLELISM preparations at a time per
   * profile: one preparation mostly waits (on the server's fork, on the kernel moving the process
   * into its cgroup), so two in flight keep up with back-to-back runs.
   */
  #replenish(profile: string): void {
    const queue = this.#standbys.get(profile) ?? [];
    this.#standbys.set(profile, queue);
    const want = this.#options.standbys ?? 4;
    const inFlight = this.#preparing.get(profile) ?? new Set<Promise<void>>();
    this.#preparing.set(profile, inFlight);
    while (!this.#disposed && inFlight.size < REFILL_PARALLELISM && queue.length + inFlight.size < want) {
      const preparing: Promise<void> = this.#addStandby(profile, queue).then((added) => {
        // Out of the count before the refill, which counts what is in flight.
        inFlight.delete(preparing);
        // After a failure the next run prepares its own; a dead server is restarted then.
        if (added) this.#replenish(profile);
      });
      // dispose() waits for these, so that no standby (nor its cgroup) is made after it.
      inFlight.add(preparing);
    }
  }

  /** Prepares one standby onto `queue`; false when it could not be made. */
  async #addStandby(profile: string, queue: Standby[]): Promise<boolean> {
    try {
      const zygote = await this.#zygote(profile);
      const standby = await this.#prepare(zygote, this.#options.standbyLimits, true);
      if (this.#disposed) {
        zygote.abort(standby);
        await standby.run.dispose();
      } else queue.push(standby);
      return true;
    } catch {
      return false;
    }
  }

  #zygote(profile: string): Promise<Zygote> {
    const entry = this.#zygotes.get(profile);
    if (entry && (entry.started === undefined || entry.started.alive)) return entry.starting;
    const spec = this.#profiles[profile];
    if (!spec) return Promise.reject(new Error(`unknown warm profile ${JSON.stringify(profile)}`));
    const next: { starting: Promise<Zygote>; started?: Zygote } = { starting: this.#start(spec) };
    next.starting.then(
      (zygote) => {
        next.started = zygote;
        zygote.ready.catch(() => this.#zygotes.get(profile) === next && this.#zygotes.delete(profile));
      },
      () => this.#zygotes.get(profile) === next && this.#zygotes.delete(profile),
    );
    this.#zygotes.set(profile, next);
    return next.starting;
  }

  async #start(profile: WarmProfile): Promise<Zygote> {
    const script = await (this.#script ??= this.#installScript());
    // The server runs under the fork-server filter (it must still mount each run's /proc and
    // tmpfs); every run installs the full filter for runs itself before its code starts.
    const runFilter = (await this.#options.sandboxes.seccompFiles())?.run;
    const lease = await this.#options.sandboxes.lease({
      // The server's own limits; each run gets its own cgroup and rlimits.
      limits: { ...DEFAULT_CEILINGS },
      network: false,
      processCpuLimit: false,
      forkServer: true,
      readOnlyPaths: runFilter ? [script, runFilter] : [script],
    });
    try {
      const proc = await lease.sandbox.spawn({
        argv: [this.#options.python, "-I", "-u", join(script, "zygote.py"), ...profile.preload],
        env: {
          PATH: "/usr/local/bin:/usr/bin:/bin",
          LANG: "C.UTF-8",
          MPLBACKEND: "Agg",
          HOME: "/tmp",
          ...(runFilter ? { RUNCELL_RUN_FILTER: runFilter } : {}),
        },
        output: "pipe",
        input: "pipe",
        // Every run's request, events and output pass through its stdio: pipes, not the spawn
        // helper's sockets (about 7% more runs per second); started once, its fork is cheap.
        strategy: "direct",
      });
      return new Zygote(proc, lease, this.#options.startTimeoutMs ?? 60_000);
    } catch (error) {
      lease.release();
      throw error;
    }
  }

  /** Copies the server script into the runtime dir, which every sandbox uid can reach. */
  async #installScript(): Promise<string> {
    const dir = join(this.#options.runtimeDir, "warm");
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await chmod(dir, 0o755);
    await copyFile(ZYGOTE_SOURCE, join(dir, "zygote.py"));
    await chmod(join(dir, "zygote.py"), 0o644);
    return dir;
  }

  /** Stops every fork server (their runs die with them) and removes every standby's cgroup. */
  async dispose(): Promise<void> {
    this.#disposed = true;
    await Promise.allSettled([...this.#preparing.values()].flatMap((inFlight) => [...inFlight]));
    const standbys = [...this.#standbys.values()].flat();
    this.#standbys.clear();
    for (const standby of standbys) standby.zygote.abort(standby);
    await Promise.all(standbys.map((standby) => standby.run.dispose()));
    await Promise.allSettled([...this.#releasing]);
    const spares = this.#spareCgroups.splice(0);
    await Promise.all(spares.map((cgroup) => cgroup.dispose().catch(() => undefined)));
    const entries = [...this.#zygotes.values()];
    this.#zygotes.clear();
    await Promise.all(entries.map(async (e) => (await e.starting.catch(() => undefined))?.dispose()));
  }
}
