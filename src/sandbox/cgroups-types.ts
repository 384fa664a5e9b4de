/** Limits a cgroup enforces for a whole process tree; null leaves that controller unlimited. */
export interface CgroupLimits {
  memoryBytes: number | null;
  pids: number | null;
}

/** What a cgroup measured for its process tree. Fields are null where the host cannot tell. */
export interface CgroupStats {
  cpuMs: number | null;
  peakMemoryBytes: number | null;
  /** The kernel's OOM killer killed a process of this group. */
  oomKilled: boolean;
  /** A fork or clone failed because the pids limit was reached. */
  pidsLimitHit: boolean;
}

/** One cgroup (one directory per v1 hierarchy, or one v2 directory) owned by one run. */
export interface CgroupHandle {
  /**
   * The `cgroup.procs` files a process writes its own pid into to join the group (one per v1
   * hierarchy used, or the single v2 one). Joining before exec makes every descendant a member.
   */
  readonly procsFiles: readonly string[];
  /** Moves the running process `pid` (not its existing children) into every hierarchy of the group. */
  adopt(pid: number): Promise<void>;
  stats(): Promise<CgroupStats>;
  /** SIGKILLs every process in the group (freezing first where the host allows). */
  killAll(): Promise<void>;
  /**
   * Makes an empty group ready for another process tree with the same limits, its measurements
   * starting again from zero (a reused group costs a fraction of a new one). Resolves false, the
   * group unchanged, when it cannot be reused: it still has processes, it still holds more than
   * `maxResidualBytes` of memory (page cache its tree read), or the host cannot reset its memory
   * peak (cgroup v2).
   */
  recycle(options?: { maxResidualBytes?: number }): Promise<boolean>;
  /** Kills what is left and removes the group. Idempotent, bounded in time. */
  dispose(): Promise<void>;
}

/** What this host's cgroups can do for runcell. */
export interface CgroupSupport {
  version: "v1" | "v2" | "none";
  memory: boolean;
  pids: boolean;
  cpu: boolean;
  freezer: boolean;
  /** Why a controller is unavailable, with the command that would fix it. */
  notes: string[];
}

export interface CgroupManager {
  readonly support: CgroupSupport;
  /**
   * Creates a group named `name` (a fresh id) with the given limits. Its directory name is
   * `name` tagged with this process's pid (`<name>.p<pid>`), for sweep().
   */
  create(name: string, limits: CgroupLimits): Promise<CgroupHandle>;
  /**
   * Removes the groups that runcell processes no longer alive left behind (a process killed
   * with SIGKILL cannot remove its own), SIGKILLing what still runs in them first: a sandbox
   * caught mid-launch by its runcell's death can outlive it. Groups of live owners and groups
   * runcell did not make are never touched. detectCgroups() runs it once. Resolves with how
   * many it removed.
   */
  sweep(): Promise<number>;
}
