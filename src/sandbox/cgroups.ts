/**
 * cgroup v1 and v2 behind the CgroupManager interface: detection by actually creating a probe
 * group, one group per run under a `runcell` parent inside runcell's own cgroup, limits,
 * measurements, killing a whole tree and removing the group.
 *
 * Layout on v1 (one directory per hierarchy used):
 *   <mount of memory>/<own memory path>/runcell/<name>
 *   <mount of pids>/<own pids path>/runcell/<name>
 *   <mount of cpuacct>/<own cpuacct path>/runcell/<name>
 *   <mount of freezer>/<own freezer path>/runcell/<name>
 * Layout on v2 (one directory):
 *   <mount>/<own path>/runcell/<name>
 * where `runcell` has the memory and pids controllers enabled in its cgroup.subtree_control and
 * holds no process itself (the no-internal-process rule), and each run gets a leaf.
 */
import { randomBytes } from "node:crypto";
import {
  accessSync,
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  write,
  writeFileSync,
} from "node:fs";
import { realpath } from "node:fs/promises";
import { dirname, join } from "node:path";
import { InvalidArgumentError, RuncellError } from "../errors.js";
import type {
  CgroupHandle,
  CgroupLimits,
  CgroupManager,
  CgroupStats,
  CgroupSupport,
} from "./cgroups-types.js";

export interface DetectCgroupsOptions {
  /**
   * Where the cgroup filesystems are mounted: a cgroup2 mount (pure v2), or a directory holding
   * one mount per v1 controller (`memory/`, `pids/`, …, and possibly a cgroup2 `unified/`).
   * Default `/sys/fs/cgroup`.
   */
  root?: string;
  /** The directory, inside runcell's own cgroup, that holds one group per run. Default `runcell`. */
  parentName?: string;
}

/** Exit status of the join wrapper when a cgroup cannot be joined (nothing was executed). */
export const CGROUP_JOIN_FAILED_EXIT = 125;

/**
 * Wraps `argv` so that the process joins every cgroup in `procsFiles` before it executes
 * anything: race-free, because the process that writes its pid is the one that then `exec`s
 * `argv`, so every descendant is born inside the group and nothing ever runs outside it.
 *
 *   /bin/sh -c 'i=0; while [ $i -lt N ]; do echo $$ > "$1" || exit 125; shift; i=$((i+1)); done;
 *               exec "$@"' runcell-join <procs file 1> … <procs file N> <argv…>
 *
 * `$$` is the shell's pid, which `exec` hands on to the program. The files and argv travel as
 * positional parameters, never through the script text, so no quoting can go wrong. If a write
 * fails (group removed, limit already reached, no permission) the shell prints the reason and
 * exits with {@link CGROUP_JOIN_FAILED_EXIT} without running `argv`. Spawn the result with a
 * cleared environment of your choosing: the shell needs none.
 */
export function joinCgroupArgv(procsFiles: readonly string[], argv: readonly string[]): string[] {
  if (argv.length === 0)
    throw new InvalidArgumentError("INVALID_ARGV", "joinCgroupArgv needs a program to run");
  if (procsFiles.length === 0) return [...argv];
  const script =
    `i=0; while [ $i -lt ${procsFiles.length} ]; do ` +
    `echo $$ > "$1" || { echo "runcell: cannot join cgroup $1" >&2; exit ${CGROUP_JOIN_FAILED_EXIT}; }; ` +
    `shift; i=$((i+1)); done; exec "$@"`;
  return ["/bin/sh", "-c", script, "runcell-join", ...procsFiles, ...argv];
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;
/** How long killAll keeps killing before it gives up. */
const KILL_DEADLINE_MS = 5_000;
/** How long a freeze may take to settle before killing goes ahead without it. */
const FREEZE_DEADLINE_MS = 1_000;
/** How long dispose retries rmdir while the kernel releases the group. */
const RMDIR_DEADLINE_MS = 3_000;
/** Sampling interval of memory.current where the kernel keeps no peak (v2 before 5.19). */
const PEAK_SAMPLE_MS = 100;

function errno(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// cgroupfs lives in memory: its calls return in microseconds and never wait on a disk, so they
// are made synchronously; a thread-pool round trip per call costs far more than the call.

async function exists(path: string): Promise<boolean> {
  try {
    accessSync(path);
    return true;
  } catch {
    return false;
  }
}

async function readText(path: string): Promise<string | null> {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** Writes an existing control file; never creates one (flag r+). */
async function writeControl(path: string, value: string): Promise<void> {
  writeFileSync(path, value, { flag: "r+" });
}

/**
 * Writes an existing control file with the write itself on the thread pool: moving a process
 * between cgroups waits for an RCU grace period (about half a millisecond of waiting, not work)
 * that would otherwise stall the event loop.
 */
function writeControlOffThread(path: string, value: string): Promise<void> {
  const fd = openSync(path, "r+");
  return new Promise((resolve, reject) => {
    write(fd, value, (error) => {
      closeSync(fd);
      if (error) reject(error);
      else resolve();
    });
  });
}

/** A number from a single-value control file; null when absent, unreadable or "max". */
async function readNumber(path: string): Promise<number | null> {
  const text = await readText(path);
  if (text === null) return null;
  const value = Number(text.trim());
  return Number.isFinite(value) ? value : null;
}

/** The value of `key` in a flat-keyed file (`key value` lines: memory.events, cpu.stat…). */
async function readKeyed(path: string, key: string): Promise<number | null> {
  const text = await readText(path);
  if (text === null) return null;
  for (const line of text.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k === key && v !== undefined) {
      const value = Number(v);
      return Number.isFinite(value) ? value : null;
    }
  }
  return null;
}

function describeError(error: unknown): string {
  const code = errno(error);
  const message = error instanceof Error ? error.message : String(error);
  return code ? `${code}: ${message.replace(/^[A-Z]+: /, "")}` : message;
}

// ---------------------------------------------------------------------------------------------
// Where our own cgroups are

interface OwnCgroup {
  /** v1 controller names, or [] for the v2 line (`0::/path`). */
  controllers: string[];
  path: string;
}

interface MountEntry {
  mountPoint: string;
  /** The path inside the hierarchy that is mounted there (not "/" without a cgroup namespace). */
  root: string;
  fsType: string;
  superOptions: string[];
}

function parseProcCgroup(text: string): OwnCgroup[] {
  const entries: OwnCgroup[] = [];
  for (const line of text.split("\n")) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    entries.push({ controllers: match[2] ? match[2].split(",") : [], path: match[3]! });
  }
  return entries;
}

function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const fields = left.split(" ");
    const tail = right.split(" ");
    if (fields.length < 5 || tail.length < 3) continue;
    entries.push({
      root: unescapeMount(fields[3]!),
      mountPoint: unescapeMount(fields[4]!),
      fsType: tail[0]!,
      superOptions: tail[2]!.split(","),
    });
  }
  return entries;
}

/**
 * The directory of our own cgroup inside the hierarchy mounted at `mountDir`, or a reason why
 * it is not reachable there.
 */
async function ownDirectory(
  mountDir: string,
  ownPath: string,
  mounts: readonly MountEntry[],
): Promise<{ dir: string } | { problem: string }> {
  let real: string;
  try {
    real = await realpath(mountDir);
  } catch (error) {
    return { problem: `${mountDir}: ${describeError(error)}` };
  }
  const mount = mounts.find((m) => m.mountPoint === real);
  let relative = ownPath;
  if (mount && mount.root !== "/") {
    if (ownPath === mount.root) relative = "/";
    else if (ownPath.startsWith(`${mount.root}/`)) relative = ownPath.slice(mount.root.length);
    else
      return {
        problem: `runcell's cgroup ${ownPath} is outside the part mounted at ${real} (${mount.root})`,
      };
  }
  const dir = relative === "/" ? real : join(real, relative);
  if (!(await exists(join(dir, "cgroup.procs")))) {
    return { problem: `runcell's cgroup ${ownPath} is not visible at ${dir}` };
  }
  return { dir };
}

function fixForWriteError(error: unknown, dir: string): string {
  switch (errno(error)) {
    case "EROFS":
      return (
        `${dir} is read-only. Fix: mount the cgroup filesystem read-write ` +
        "(in a container: docker run --cgroupns=private --privileged, or mount -o remount,rw /sys/fs/cgroup)"
      );
    case "EACCES":
    case "EPERM":
      return (
        `no permission to create groups under ${dir}. Fix: run runcell as root, or in a delegated ` +
        "cgroup: systemd-run --scope -p Delegate=yes -- runcell …"
      );
    default:
      return `cannot use groups under ${dir} (${describeError(error)})`;
  }
}

const FALLBACK = {
  memory: "memory falls back to RLIMIT_AS per process",
  pids: "processes fall back to RLIMIT_NPROC",
  cpu: "CPU time falls back to RLIMIT_CPU per process, and the tree's cpu_ms is unknown",
  freezer: "killing a tree falls back to SIGKILL without freezing (a forking process may race the kill)",
} as const;

function probeName(): string {
  return `probe-${process.pid}-${randomBytes(4).toString("hex")}`;
}

/**
 * Creates `parent` when missing (remembering whether we did), runs `prepareParent` and then
 * `body` on a fresh probe group inside it, then removes the probe and, if we created it, the
 * parent. Retries (bounded) when a concurrent runcell removes the parent in between.
 */
async function withProbe<T>(
  parent: string,
  body: (probe: string) => Promise<T>,
  prepareParent?: () => Promise<void>,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    let createdParent = false;
    try {
      mkdirSync(parent);
      createdParent = true;
    } catch (error) {
      if (errno(error) !== "EEXIST") throw error;
    }
    const probe = join(parent, probeName());
    try {
      await prepareParent?.();
      try {
        mkdirSync(probe);
      } catch (error) {
        if (errno(error) === "ENOENT" && attempt < 2) continue;
        throw error;
      }
      try {
        return await body(probe);
      } finally {
        await removeDir(probe, 1_000);
      }
    } finally {
      if (createdParent) {
        try {
          rmdirSync(parent);
        } catch {
          // another runcell put a group in it meanwhile: it stays
        }
      }
    }
  }
}

/** rmdir with bounded retries while the kernel still holds the group; true when it is gone. */
async function removeDir(dir: string, deadlineMs: number): Promise<boolean> {
  const deadline = Date.now() + deadlineMs;
  let wait = 5;
  for (;;) {
    try {
      rmdirSync(dir);
      return true;
    } catch (error) {
      const code = errno(error);
      if (code === "ENOENT") return true;
      if ((code !== "EBUSY" && code !== "ENOTEMPTY" && code !== "EAGAIN") || Date.now() >= deadline) {
        return false;
      }
    }
    await delay(wait);
    wait = Math.min(wait * 2, 50);
  }
}

/**
 * A group's directory name: the caller's name tagged with the pid of the runcell process that
 * owns it, so that a later runcell can tell the leftovers of one that was killed (SIGKILL leaves
 * its emptied groups behind) from groups a live process is about to use.
 */
function ownedName(name: string): string {
  return `${name}.p${process.pid}`;
}

const OWNER_TAG = /\.p(\d+)$/;
/** Probe groups are named probe-<pid>-<random>. */
const PROBE_OWNER = /^probe-(\d+)-/;

function ownerOf(dirName: string): number | null {
  const match = OWNER_TAG.exec(dirName) ?? PROBE_OWNER.exec(dirName);
  return match ? Number(match[1]) : null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errno(error) === "EPERM";
  }
}

/** How long sweep() keeps killing and removing one leftover group before it moves on. */
const SWEEP_GROUP_DEADLINE_MS = 2_000;

/**
 * Removes the groups in `parent` whose owning runcell process is gone, SIGKILLing what is still
 * in them first (each process of a dead owner's sandbox: they cannot be anyone else's).
 * Returns how many were removed.
 */
async function sweepParent(parent: string): Promise<number> {
  let names: string[];
  try {
    names = readdirSync(parent, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const owner = ownerOf(name);
    if (owner === null || owner === process.pid || isAlive(owner)) continue;
    const dir = join(parent, name);
    const deadline = Date.now() + SWEEP_GROUP_DEADLINE_MS;
    // Killed in rounds: a member may fork while the list is read.
    const procs = [join(dir, "cgroup.procs")];
    for (let pids = await membersOf(procs); pids.length > 0 && Date.now() < deadline;) {
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone meanwhile
        }
      }
      await delay(10);
      pids = await membersOf(procs);
    }
    // Another runcell sweeping too may have removed it meanwhile (removeDir counts that as gone).
    if (await removeDir(dir, Math.max(0, deadline - Date.now()))) removed++;
  }
  return removed;
}

/** The pids listed in `cgroup.procs` files (never runcell itself); none for files that are gone. */
async function membersOf(procsFiles: readonly string[]): Promise<number[]> {
  const pids = new Set<number>();
  for (const file of procsFiles) {
    const text = await readText(file);
    if (text === null) continue;
    for (const line of text.split("\n")) {
      const pid = Number(line);
      if (Number.isInteger(pid) && pid > 1 && pid !== process.pid) pids.add(pid);
    }
  }
  return [...pids];
}

function validateName(name: string, what: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidArgumentError(
      "INVALID_CGROUP_NAME",
      `${what} must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit, not ${JSON.stringify(name)}`,
    );
  }
}

function validateLimits(limits: CgroupLimits): void {
  for (const key of ["memoryBytes", "pids"] as const) {
    const value = limits[key];
    if (value !== null && (!Number.isSafeInteger(value) || value < 1)) {
      throw new InvalidArgumentError(
        "INVALID_LIMIT",
        `cgroup ${key} must be a positive whole number or null, not ${value}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Groups

/**
 * The group's counters as the kernel keeps them, since the group was made. stats() reports
 * them relative to the baseline taken when the group was last recycled.
 */
interface RawStats {
  cpuMs: number | null;
  peakMemoryBytes: number | null;
  /** Memory charged now (null where not read). */
  currentMemoryBytes: number | null;
  /** OOM kills; null on kernels without the counter. */
  oomKills: number | null;
  /** Times the memory limit was hit (v1 failcnt): the OOM sign on kernels without oomKills. */
  memoryLimitHits: number | null;
  /** Forks refused at the pids limit. */
  pidsLimitHits: number | null;
}

const ZERO_BASELINE = { cpuMs: 0, memoryBytes: 0, oomKills: 0, memoryLimitHits: 0, pidsLimitHits: 0 };

/** Default recycle() bound on memory a group may still hold to be reused. */
const RECYCLE_MAX_RESIDUAL_BYTES = 1024 * 1024;

/** Kill loop, disposal and stats caching common to v1 and v2. */
abstract class Group implements CgroupHandle {
  readonly procsFiles: readonly string[];
  /** Every directory of the group, removed by dispose(). */
  protected readonly dirs: readonly string[];
  #lastStats: CgroupStats = { cpuMs: null, peakMemoryBytes: null, oomKilled: false, pidsLimitHit: false };
  #disposing: Promise<void> | undefined;
  #disposed = false;
  /** stats() has read the group at least once (since it was last recycled). */
  #measured = false;
  #baseline = { ...ZERO_BASELINE };

  constructor(dirs: readonly string[]) {
    this.dirs = dirs;
    this.procsFiles = dirs.map((dir) => join(dir, "cgroup.procs"));
  }

  protected abstract readStats(): Promise<RawStats>;
  /** Restarts the kernel's memory peak from the current usage; false where it cannot. */
  protected abstract resetPeak(): Promise<boolean>;
  /** Freezes the group; resolves once frozen or after a bounded wait. False when it cannot. */
  protected abstract freeze(): Promise<boolean>;
  protected abstract thaw(): Promise<void>;
  /** Kills every member at once where the kernel can (v2 cgroup.kill); false when it cannot. */
  protected abstract killAtOnce(): Promise<boolean>;
  protected stopSampling(): void {}

  async adopt(pid: number): Promise<void> {
    if (!Number.isSafeInteger(pid) || pid < 1) {
      throw new InvalidArgumentError("INVALID_PID", `cannot move pid ${pid} into a cgroup`);
    }
    await Promise.all(this.procsFiles.map((file) => writeControlOffThread(file, String(pid))));
  }

  /** After dispose(), the measurements taken just before the group was removed. */
  async stats(): Promise<CgroupStats> {
    if (this.#disposed) return { ...this.#lastStats };
    const raw = await this.readStats();
    this.#measured = true;
    const base = this.#baseline;
    const since = (value: number | null, start: number) =>
      value === null ? null : Math.max(0, value - start);
    const oomKills = since(raw.oomKills, base.oomKills);
    const stats: CgroupStats = {
      cpuMs: since(raw.cpuMs, base.cpuMs),
      peakMemoryBytes: since(raw.peakMemoryBytes, base.memoryBytes),
      // Kernels before 4.13 have no oom_kill counter: hitting the limit is the best sign left.
      oomKilled:
        oomKills !== null ? oomKills > 0 : (since(raw.memoryLimitHits, base.memoryLimitHits) ?? 0) > 0,
      pidsLimitHit: (since(raw.pidsLimitHits, base.pidsLimitHits) ?? 0) > 0,
    };
    // A group that vanished underneath reads as nulls: keep what was measured before.
    this.#lastStats = {
      cpuMs: stats.cpuMs ?? this.#lastStats.cpuMs,
      peakMemoryBytes: stats.peakMemoryBytes ?? this.#lastStats.peakMemoryBytes,
      oomKilled: stats.oomKilled || this.#lastStats.oomKilled,
      pidsLimitHit: stats.pidsLimitHit || this.#lastStats.pidsLimitHit,
    };
    return { ...this.#lastStats };
  }

  async recycle(options: { maxResidualBytes?: number } = {}): Promise<boolean> {
    if (this.#disposed || this.#disposing) return false;
    // Processes join every hierarchy at once and cannot leave one alone: one list tells.
    if ((await this.members(1)).length > 0) return false;
    const raw = await this.readStats();
    const residual = raw.currentMemoryBytes ?? 0;
    if (residual > (options.maxResidualBytes ?? RECYCLE_MAX_RESIDUAL_BYTES)) return false;
    if (!(await this.resetPeak())) return false;
    // The peak restarts from what the group still holds; the next tree is measured above it.
    this.#baseline = {
      cpuMs: raw.cpuMs ?? 0,
      memoryBytes: residual,
      oomKills: raw.oomKills ?? 0,
      memoryLimitHits: raw.memoryLimitHits ?? 0,
      pidsLimitHits: raw.pidsLimitHits ?? 0,
    };
    this.#lastStats = { cpuMs: null, peakMemoryBytes: null, oomKilled: false, pidsLimitHit: false };
    this.#measured = false;
    return true;
  }

  /** The pids in the group (any of its hierarchies), never including runcell itself. */
  async members(hierarchies = this.procsFiles.length): Promise<number[]> {
    return membersOf(this.procsFiles.slice(0, hierarchies));
  }

  /**
   * SIGKILLs every process of the group: with cgroup.kill where the kernel has it, otherwise by
   * freezing the group (so nothing can fork or exit while the list is read), SIGKILLing every
   * listed pid and thawing, repeated until the group is empty. Bounded by KILL_DEADLINE_MS;
   * throws CGROUP_KILL_TIMEOUT naming what is left when processes remain.
   */
  async killAll(): Promise<void> {
    await this.#killAll();
  }

  /** killAll(), resolving with whether the group had any process. */
  async #killAll(): Promise<boolean> {
    if (this.#disposed) return false;
    const deadline = Date.now() + KILL_DEADLINE_MS;
    let wait = 2;
    for (let round = 0; ; round++) {
      let pids = await this.members();
      if (pids.length === 0) return round > 0;
      if (!(await this.killAtOnce())) {
        const frozen = await this.freeze();
        try {
          if (frozen) pids = await this.members();
          for (const pid of pids) {
            try {
              process.kill(pid, "SIGKILL");
            } catch {
              // exited meanwhile
            }
          }
        } finally {
          if (frozen) await this.thaw();
        }
      }
      if (Date.now() >= deadline) {
        const left = await this.members();
        if (left.length === 0) return true;
        throw new RuncellError(
          "CGROUP_KILL_TIMEOUT",
          `${left.length} process(es) still in ${this.dirs[0]} after ${KILL_DEADLINE_MS} ms: ${left.slice(0, 10).join(", ")}`,
          { data: { pids: left } },
        );
      }
      // Bounded polling of the OS while the kernel delivers the kills.
      await delay(wait);
      wait = Math.min(wait * 2, 50);
    }
  }

  /**
   * Kills what is left, takes a last measurement (still returned by stats()), and removes every
   * directory of the group, retrying while the kernel releases it. Idempotent; a group already
   * removed is not an error. Throws CGROUP_REMOVE_FAILED when a directory stays (it may be retried).
   */
  dispose(): Promise<void> {
    this.#disposing ??= this.#dispose().catch((error: unknown) => {
      this.#disposing = undefined;
      throw error;
    });
    return this.#disposing;
  }

  async #dispose(): Promise<void> {
    if (this.#disposed) return;
    const killed = await this.#killAll();
    // An empty group's figures are final: a read after its last process left need not be redone.
    if (killed || !this.#measured) await this.stats();
    this.stopSampling();
    const left: string[] = [];
    for (const dir of this.dirs) {
      if (!(await removeDir(dir, RMDIR_DEADLINE_MS))) left.push(dir);
    }
    if (left.length > 0) {
      throw new RuncellError("CGROUP_REMOVE_FAILED", `could not remove cgroup ${left.join(", ")}`, {
        data: { dirs: left },
      });
    }
    this.#disposed = true;
  }
}

interface V1Dirs {
  memory: string | null;
  pids: string | null;
  cpuacct: string | null;
  freezer: string | null;
}

class V1Group extends Group {
  readonly #d: V1Dirs;

  constructor(dirs: readonly string[], roles: V1Dirs) {
    super(dirs);
    this.#d = roles;
  }

  protected async readStats(): Promise<RawStats> {
    const d = this.#d;
    const [usageNs, peak, current, oomKills, pidsMax] = await Promise.all([
      d.cpuacct ? readNumber(join(d.cpuacct, "cpuacct.usage")) : null,
      d.memory ? readNumber(join(d.memory, "memory.max_usage_in_bytes")) : null,
      d.memory ? readNumber(join(d.memory, "memory.usage_in_bytes")) : null,
      d.memory ? readKeyed(join(d.memory, "memory.oom_control"), "oom_kill") : null,
      d.pids ? readKeyed(join(d.pids, "pids.events"), "max") : null,
    ]);
    // Kernels before 4.13 count no OOM kills: hitting the limit is the best sign left then.
    const failcnt = d.memory && oomKills === null ? await readNumber(join(d.memory, "memory.failcnt")) : null;
    return {
      cpuMs: usageNs === null ? null : usageNs / 1e6,
      peakMemoryBytes: peak,
      currentMemoryBytes: current,
      oomKills,
      memoryLimitHits: failcnt,
      pidsLimitHits: pidsMax,
    };
  }

  protected async resetPeak(): Promise<boolean> {
    if (!this.#d.memory) return true;
    try {
      // v1: any write restarts max_usage_in_bytes from the current usage.
      await writeControl(join(this.#d.memory, "memory.max_usage_in_bytes"), "0");
      return true;
    } catch {
      return false;
    }
  }

  protected async freeze(): Promise<boolean> {
    const freezer = this.#d.freezer;
    if (!freezer) return false;
    const state = join(freezer, "freezer.state");
    try {
      await writeControl(state, "FROZEN");
    } catch {
      return false;
    }
    const deadline = Date.now() + FREEZE_DEADLINE_MS;
    while (Date.now() < deadline) {
      if ((await readText(state))?.trim() === "FROZEN") return true;
      await delay(2);
    }
    return true; // FREEZING: kill anyway, and thaw after
  }

  protected async thaw(): Promise<void> {
    if (!this.#d.freezer) return;
    try {
      await writeControl(join(this.#d.freezer, "freezer.state"), "THAWED");
    } catch {
      // gone
    }
  }

  protected async killAtOnce(): Promise<boolean> {
    return false;
  }
}

class V2Group extends Group {
  readonly #dir: string;
  readonly #memory: boolean;
  readonly #pids: boolean;
  #sampledPeak: number | null = null;
  #sampler: NodeJS.Timeout | undefined;

  constructor(dir: string, options: { memory: boolean; pids: boolean; samplePeak: boolean }) {
    super([dir]);
    this.#dir = dir;
    this.#memory = options.memory;
    this.#pids = options.pids;
    if (options.samplePeak) {
      const current = join(dir, "memory.current");
      let busy = false;
      this.#sampler = setInterval(() => {
        if (busy) return;
        busy = true;
        void readNumber(current).then((value) => {
          busy = false;
          if (value !== null) this.#sampledPeak = Math.max(this.#sampledPeak ?? 0, value);
        });
      }, PEAK_SAMPLE_MS);
      this.#sampler.unref();
    }
  }

  protected override stopSampling(): void {
    clearInterval(this.#sampler);
    this.#sampler = undefined;
  }

  protected async readStats(): Promise<RawStats> {
    const dir = this.#dir;
    const [usageUsec, peak, current, oomKill, pidsMax] = await Promise.all([
      readKeyed(join(dir, "cpu.stat"), "usage_usec"),
      this.#memory ? readNumber(join(dir, "memory.peak")) : null,
      this.#memory && this.#sampler ? readNumber(join(dir, "memory.current")) : null,
      this.#memory ? readKeyed(join(dir, "memory.events"), "oom_kill") : null,
      this.#pids ? readKeyed(join(dir, "pids.events"), "max") : null,
    ]);
    if (current !== null) this.#sampledPeak = Math.max(this.#sampledPeak ?? 0, current);
    return {
      cpuMs: usageUsec === null ? null : usageUsec / 1000,
      peakMemoryBytes: peak ?? (this.#memory ? this.#sampledPeak : null),
      currentMemoryBytes: current,
      oomKills: oomKill ?? (this.#memory ? 0 : null),
      memoryLimitHits: null,
      pidsLimitHits: pidsMax,
    };
  }

  /** memory.peak restarts only per open file (Linux 6.12+), which stats() does not keep: never. */
  protected async resetPeak(): Promise<boolean> {
    return !this.#memory;
  }

  protected async freeze(): Promise<boolean> {
    try {
      await writeControl(join(this.#dir, "cgroup.freeze"), "1");
    } catch {
      return false;
    }
    const deadline = Date.now() + FREEZE_DEADLINE_MS;
    while (Date.now() < deadline) {
      if ((await readKeyed(join(this.#dir, "cgroup.events"), "frozen")) === 1) return true;
      await delay(2);
    }
    return true;
  }

  protected async thaw(): Promise<void> {
    try {
      await writeControl(join(this.#dir, "cgroup.freeze"), "0");
    } catch {
      // gone
    }
  }

  protected async killAtOnce(): Promise<boolean> {
    try {
      await writeControl(join(this.#dir, "cgroup.kill"), "1");
      return true;
    } catch {
      return false; // before Linux 5.14, or the group is gone
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Managers

class NoCgroups implements CgroupManager {
  constructor(readonly support: CgroupSupport) {}
  async sweep(): Promise<number> {
    return 0;
  }
  async create(): Promise<CgroupHandle> {
    throw new RuncellError(
      "CGROUPS_UNAVAILABLE",
      `this host has no usable cgroups: ${this.support.notes.join("; ") || "none found"}`,
    );
  }
}

function unsupported(support: CgroupSupport, limits: CgroupLimits): void {
  for (const [key, controller] of [
    ["memoryBytes", "memory"],
    ["pids", "pids"],
  ] as const) {
    if (limits[key] !== null && !support[controller]) {
      throw new RuncellError(
        "CGROUP_CONTROLLER_UNAVAILABLE",
        `cannot limit ${key}: the ${controller} cgroup controller is not available (${support.notes.join("; ")})`,
      );
    }
  }
}

/** mkdir of a run's group, re-creating the parent if a concurrent probe removed it meanwhile. */
async function makeGroupDir(parent: string, dir: string, prepareParent?: () => Promise<void>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    mkdirSync(parent, { recursive: true });
    await prepareParent?.();
    try {
      mkdirSync(dir);
      return;
    } catch (error) {
      if (errno(error) === "EEXIST") {
        throw new RuncellError("CGROUP_EXISTS", `cgroup ${dir} already exists`);
      }
      if (errno(error) !== "ENOENT" || attempt >= 2) throw error;
    }
  }
}

interface V1Hierarchy {
  /** Our own cgroup directory in this hierarchy. */
  own: string;
  roles: Array<keyof V1Dirs>;
}

class V1Manager implements CgroupManager {
  constructor(
    readonly support: CgroupSupport,
    readonly hierarchies: readonly V1Hierarchy[],
    readonly parentName: string,
  ) {}

  async sweep(): Promise<number> {
    let removed = 0;
    for (const hierarchy of this.hierarchies)
      removed += await sweepParent(join(hierarchy.own, this.parentName));
    return removed;
  }

  async create(name: string, limits: CgroupLimits): Promise<CgroupHandle> {
    validateName(name, "cgroup name");
    validateLimits(limits);
    unsupported(this.support, limits);
    const created: string[] = [];
    const roles: V1Dirs = { memory: null, pids: null, cpuacct: null, freezer: null };
    try {
      for (const hierarchy of this.hierarchies) {
        const parent = join(hierarchy.own, this.parentName);
        const dir = join(parent, ownedName(name));
        await makeGroupDir(parent, dir);
        created.push(dir);
        for (const role of hierarchy.roles) roles[role] = dir;
      }
      if (limits.memoryBytes !== null && roles.memory) {
        const bytes = String(limits.memoryBytes);
        // memory+swap must stay >= memory: a fresh group has both unlimited, so memory goes first.
        await writeControl(join(roles.memory, "memory.limit_in_bytes"), bytes);
        const memsw = join(roles.memory, "memory.memsw.limit_in_bytes");
        if (await exists(memsw)) await writeControl(memsw, bytes);
      }
      if (limits.pids !== null && roles.pids) {
        await writeControl(join(roles.pids, "pids.max"), String(limits.pids));
      }
    } catch (error) {
      for (const dir of created.reverse()) await removeDir(dir, 1_000);
      if (error instanceof RuncellError) throw error;
      throw new RuncellError(
        "CGROUP_CREATE_FAILED",
        `cannot create cgroup ${name}: ${describeError(error)}`,
        {
          cause: error,
        },
      );
    }
    return new V1Group(created, roles);
  }
}

/** The v2 controllers runcell asks for (cpu only for cpu.max in the future; cpu.stat needs none). */
const V2_CONTROLLERS = ["memory", "pids"] as const;

class V2Manager implements CgroupManager {
  readonly #parent: string;
  readonly #controllers: readonly string[];
  readonly #hasPeak: boolean;

  constructor(
    readonly support: CgroupSupport,
    parent: string,
    controllers: readonly string[],
    hasPeak: boolean,
  ) {
    this.#parent = parent;
    this.#controllers = controllers;
    this.#hasPeak = hasPeak;
  }

  async sweep(): Promise<number> {
    return sweepParent(this.#parent);
  }

  async create(name: string, limits: CgroupLimits): Promise<CgroupHandle> {
    validateName(name, "cgroup name");
    validateLimits(limits);
    unsupported(this.support, limits);
    const dir = join(this.#parent, ownedName(name));
    let made = false;
    try {
      await makeGroupDir(this.#parent, dir, () => enableControllers(this.#parent, this.#controllers));
      made = true;
      if (limits.memoryBytes !== null) {
        await writeControl(join(dir, "memory.max"), String(limits.memoryBytes));
        const swap = join(dir, "memory.swap.max");
        if (await exists(swap)) await writeControl(swap, "0");
      }
      if (limits.pids !== null) await writeControl(join(dir, "pids.max"), String(limits.pids));
    } catch (error) {
      if (made) await removeDir(dir, 1_000);
      if (error instanceof RuncellError) throw error;
      throw new RuncellError(
        "CGROUP_CREATE_FAILED",
        `cannot create cgroup ${name}: ${describeError(error)}`,
        {
          cause: error,
        },
      );
    }
    return new V2Group(dir, {
      memory: this.support.memory,
      pids: this.support.pids,
      samplePeak: this.support.memory && !this.#hasPeak,
    });
  }
}

/** Enables `controllers` in `dir`'s cgroup.subtree_control where not enabled yet. */
async function enableControllers(dir: string, controllers: readonly string[]): Promise<void> {
  if (controllers.length === 0) return;
  const enabled = ((await readText(join(dir, "cgroup.subtree_control"))) ?? "").trim().split(/\s+/);
  const missing = controllers.filter((c) => !enabled.includes(c));
  if (missing.length === 0) return;
  await writeControl(join(dir, "cgroup.subtree_control"), missing.map((c) => `+${c}`).join(" "));
}

// ---------------------------------------------------------------------------------------------
// Detection

interface HostView {
  own: OwnCgroup[];
  mounts: MountEntry[];
}

async function detectV1(root: string, parentName: string, view: HostView): Promise<CgroupManager | null> {
  const notes: string[] = [];
  const wanted: Array<{ role: keyof V1Dirs; controller: string; file: string }> = [
    { role: "memory", controller: "memory", file: "memory.limit_in_bytes" },
    { role: "pids", controller: "pids", file: "pids.max" },
    { role: "cpuacct", controller: "cpuacct", file: "cpuacct.usage" },
    { role: "freezer", controller: "freezer", file: "freezer.state" },
  ];
  const byDir = new Map<string, V1Hierarchy>();
  const found: Record<keyof V1Dirs, boolean> = { memory: false, pids: false, cpuacct: false, freezer: false };
  let realRoot = root;
  try {
    realRoot = await realpath(root);
  } catch {
    // keep as given
  }
  let anyHierarchy = false;
  for (const { role, controller, file } of wanted) {
    const mount = view.mounts.find(
      (m) =>
        m.fsType === "cgroup" &&
        m.superOptions.includes(controller) &&
        (m.mountPoint === realRoot || m.mountPoint.startsWith(`${realRoot}/`)),
    );
    const mountDir = mount?.mountPoint ?? join(root, controller);
    if (!mount && !(await exists(join(mountDir, "cgroup.procs")))) {
      notes.push(
        `${controller}: no cgroup v1 hierarchy at ${mountDir}; ${FALLBACK[role === "cpuacct" ? "cpu" : role]}. ` +
          `Fix: mkdir -p ${mountDir} && mount -t cgroup -o ${controller} cgroup ${mountDir}` +
          (controller === "memory" ? " (if the kernel disabled it, boot with cgroup_enable=memory)" : ""),
      );
      continue;
    }
    anyHierarchy = true;
    const ownLine = view.own.find((entry) => entry.controllers.includes(controller));
    if (!ownLine) {
      notes.push(`${controller}: /proc/self/cgroup lists no ${controller} hierarchy`);
      continue;
    }
    const own = await ownDirectory(mountDir, ownLine.path, view.mounts);
    if ("problem" in own) {
      notes.push(`${controller}: ${own.problem}`);
      continue;
    }
    // The real test: create a group, check the control file is there and writable, remove it.
    try {
      await withProbe(join(own.dir, parentName), async (probe) => {
        const control = join(probe, file);
        if (!(await exists(control))) throw new Error(`${file} is missing in a new group`);
        if (role === "memory") await writeControl(control, "-1");
        if (role === "pids") await writeControl(control, "max");
        if (role === "freezer") await writeControl(control, "THAWED");
        if (role === "cpuacct" && (await readNumber(control)) === null)
          throw new Error(`${file} is unreadable`);
      });
    } catch (error) {
      notes.push(
        `${controller}: ${fixForWriteError(error, join(own.dir, parentName))}; ${FALLBACK[role === "cpuacct" ? "cpu" : role]}`,
      );
      continue;
    }
    found[role] = true;
    const hierarchy = byDir.get(own.dir) ?? { own: own.dir, roles: [] };
    hierarchy.roles.push(role);
    byDir.set(own.dir, hierarchy);
  }
  if (!anyHierarchy) return null;
  if (byDir.size === 0) return new NoCgroups({ ...none(), notes });
  const support: CgroupSupport = {
    version: "v1",
    memory: found.memory,
    pids: found.pids,
    cpu: found.cpuacct,
    freezer: found.freezer,
    notes,
  };
  return new V1Manager(support, [...byDir.values()], parentName);
}

/**
 * Makes `base` (our own v2 cgroup) able to delegate `wanted` controllers. A cgroup with
 * processes cannot (the no-internal-process rule), so when runcell is the only process in it,
 * runcell moves itself into a leaf `<base>/<parentName>-engine` first, as systemd asks of
 * services that manage their own delegated subtree.
 */
async function delegateFrom(
  base: string,
  wanted: readonly string[],
  parentName: string,
  notes: string[],
): Promise<boolean> {
  try {
    await enableControllers(base, wanted);
    return true;
  } catch (error) {
    if (errno(error) !== "EBUSY") {
      notes.push(
        `cannot enable ${wanted.join(", ")} in ${base}/cgroup.subtree_control: ${fixForWriteError(error, base)}`,
      );
      return false;
    }
  }
  const members = ((await readText(join(base, "cgroup.procs"))) ?? "")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map(Number);
  if (members.some((pid) => pid !== process.pid)) {
    notes.push(
      `${base} holds other processes (${members.filter((p) => p !== process.pid).length}), so it cannot delegate ` +
        `controllers to sub-groups (cgroup v2 no-internal-process rule). Fix: start runcell alone in a delegated ` +
        `cgroup, e.g. systemd-run --scope -p Delegate=yes -- runcell …`,
    );
    return false;
  }
  const engine = join(base, `${parentName}-engine`);
  try {
    mkdirSync(engine, { recursive: true });
    await writeControl(join(engine, "cgroup.procs"), String(process.pid));
    await enableControllers(base, wanted);
    notes.push(`moved runcell (pid ${process.pid}) into ${engine} so that ${base} can delegate controllers`);
    return true;
  } catch (error) {
    notes.push(`cannot delegate controllers from ${base}: ${describeError(error)}`);
    return false;
  }
}

async function detectV2(mountDir: string, parentName: string, view: HostView): Promise<CgroupManager | null> {
  if (!(await exists(join(mountDir, "cgroup.controllers")))) return null;
  const notes: string[] = [];
  const ownLine = view.own.find((entry) => entry.controllers.length === 0);
  if (!ownLine) return null;
  const own = await ownDirectory(mountDir, ownLine.path, view.mounts);
  if ("problem" in own) {
    return new NoCgroups({ ...none(), notes: [`cgroup v2: ${own.problem}`, ...noneNotes()] });
  }
  // Our own leaf from an earlier detection: the delegated base is its parent.
  let base = own.dir;
  if (base.endsWith(`/${parentName}-engine`)) base = dirname(base);

  const available = ((await readText(join(base, "cgroup.controllers"))) ?? "").trim().split(/\s+/);
  const wanted = V2_CONTROLLERS.filter((c) => available.includes(c));
  for (const c of V2_CONTROLLERS) {
    if (!available.includes(c)) {
      notes.push(
        `${c}: the ${c} controller is not delegated to ${base} (cgroup.controllers: ${available.join(" ") || "empty"}); ` +
          `${FALLBACK[c]}. Fix: run runcell in a delegated cgroup (systemd-run --scope -p Delegate=yes -- runcell …), ` +
          `or enable it in every ancestor's cgroup.subtree_control`,
      );
    }
  }
  const delegated = wanted.length === 0 || (await delegateFrom(base, wanted, parentName, notes));
  const controllers = delegated ? wanted : [];
  const parent = join(base, parentName);
  const found = { memory: false, pids: false, cpu: false, freezer: false, kill: false, peak: false };
  try {
    await withProbe(
      parent,
      async (probe) => {
        if (controllers.includes("memory") && (await exists(join(probe, "memory.max")))) {
          await writeControl(join(probe, "memory.max"), "max");
          found.memory = true;
          found.peak = await exists(join(probe, "memory.peak"));
        }
        if (controllers.includes("pids") && (await exists(join(probe, "pids.max")))) {
          await writeControl(join(probe, "pids.max"), "max");
          found.pids = true;
        }
        found.cpu = (await readKeyed(join(probe, "cpu.stat"), "usage_usec")) !== null;
        found.freezer = await exists(join(probe, "cgroup.freeze"));
        found.kill = await exists(join(probe, "cgroup.kill"));
      },
      () => enableControllers(parent, controllers),
    );
  } catch (error) {
    notes.push(`cgroup v2: ${fixForWriteError(error, parent)}`);
    return new NoCgroups({ ...none(), notes: [...notes, ...noneNotes()] });
  }
  if (!found.cpu) notes.push(`cpu: cpu.stat has no usage_usec in ${parent}; ${FALLBACK.cpu}`);
  if (!found.freezer && !found.kill) {
    notes.push(`freezer: no cgroup.freeze or cgroup.kill (Linux < 5.2); ${FALLBACK.freezer}`);
  }
  if (wanted.includes("memory") && delegated && !found.memory)
    notes.push(`memory: not enabled in ${parent}; ${FALLBACK.memory}`);
  if (wanted.includes("pids") && delegated && !found.pids)
    notes.push(`pids: not enabled in ${parent}; ${FALLBACK.pids}`);
  const support: CgroupSupport = {
    version: "v2",
    memory: found.memory,
    pids: found.pids,
    cpu: found.cpu,
    freezer: found.freezer || found.kill,
    notes,
  };
  return new V2Manager(support, parent, controllers, found.peak);
}

function none(): CgroupSupport {
  return { version: "none", memory: false, pids: false, cpu: false, freezer: false, notes: [] };
}

function noneNotes(): string[] {
  return [
    `no writable cgroup: runcell falls back to rlimits (${FALLBACK.memory}, ${FALLBACK.pids}, ${FALLBACK.cpu})`,
  ];
}

/** The score of a manager with every controller runcell uses. */
const FULL_SCORE = 15;

/** How much of what runcell uses a manager offers (memory first, freezer last). */
function score(manager: CgroupManager): number {
  const s = manager.support;
  return (s.memory ? 8 : 0) + (s.pids ? 4 : 0) + (s.cpu ? 2 : 0) + (s.freezer ? 1 : 0);
}

/** The manager, after removing what runcell processes that were killed left in its parent. */
async function swept(manager: CgroupManager): Promise<CgroupManager> {
  await manager.sweep().catch(() => 0);
  return manager;
}

/**
 * Finds out what this host's cgroups can do for runcell, by creating (and removing) a probe
 * group in each hierarchy, not only by looking at mounts. Never throws: a host without usable
 * cgroups gets version "none", with notes saying why and what runcell falls back to.
 *
 * Pure v2 (`<root>/cgroup.controllers` exists): groups under `<own v2 path>/<parentName>`.
 * v1 or hybrid: groups under `<own path in each hierarchy>/<parentName>` for memory, pids,
 * cpuacct and freezer; the hybrid's cgroup2 (`<root>/unified`) is used only when it has more to
 * offer than the v1 hierarchies.
 */
export async function detectCgroups(options: DetectCgroupsOptions = {}): Promise<CgroupManager> {
  const root = options.root ?? "/sys/fs/cgroup";
  const parentName = options.parentName ?? "runcell";
  validateName(parentName, "cgroup parent name");
  try {
    const [cgroupText, mountText] = await Promise.all([
      readText("/proc/self/cgroup"),
      readText("/proc/self/mountinfo"),
    ]);
    if (cgroupText === null) {
      return new NoCgroups({
        ...none(),
        notes: ["/proc/self/cgroup is unreadable (no cgroup support in the kernel?)", ...noneNotes()],
      });
    }
    const view: HostView = { own: parseProcCgroup(cgroupText), mounts: parseMountinfo(mountText ?? "") };

    const pure = await detectV2(root, parentName, view);
    if (pure) return await swept(pure);

    const v1 = await detectV1(root, parentName, view);
    // The hybrid's cgroup2 usually has no controllers; it is probed only when v1 lacks something.
    const unified =
      !v1 || score(v1) < FULL_SCORE ? await detectV2(join(root, "unified"), parentName, view) : null;
    const candidates = [v1, unified].filter((m): m is CgroupManager => m !== null && score(m) > 0);
    const best = candidates.sort((a, b) => score(b) - score(a))[0];
    if (best) return await swept(best);
    const notes = [...(v1?.support.notes ?? []), ...(unified?.support.notes ?? [])].filter(
      (note) => !noneNotes().includes(note),
    );
    return new NoCgroups({
      ...none(),
      notes: [...(notes.length > 0 ? notes : [`no cgroup filesystem under ${root}`]), ...noneNotes()],
    });
  } catch (error) {
    return new NoCgroups({
      ...none(),
      notes: [`cgroup detection failed: ${describeError(error)}`, ...noneNotes()],
    });
  }
}
