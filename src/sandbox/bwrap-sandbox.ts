import { existsSync } from "node:fs";
import { mkdir, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { InvalidArgumentError } from "../errors.js";
import { joinCgroupArgv } from "./cgroups.js";
import type { CgroupHandle, CgroupManager } from "./cgroups-types.js";
import type { ResourceLimits } from "./limits.js";
import { ManagedProcess, PARENT_PID_ENV } from "./managed-process.js";
import type { Sandbox, SandboxProcess, SpawnOptions } from "./types.js";

/** What a confined process may see and use, besides its limits. */
export interface SandboxPolicy {
  limits: ResourceLimits;
  /** Share the host's network. Default false: a network namespace with loopback only. */
  network: boolean;
  /**
   * A host directory mounted at /workspace (read-write unless `readOnly`). Without it the
   * workspace is a fresh tmpfs of `limits.tmpBytes` that vanishes with the process.
   */
  workspace?: { hostPath: string; readOnly: boolean };
  /** Further host paths mounted read-only at the same path. */
  readOnlyPaths?: string[];
  /** Without a memory cgroup, cap each process's address space (RLIMIT_AS) instead. Default true. */
  addressSpaceFallback?: boolean;
  /**
   * Cap each process's CPU time (RLIMIT_CPU) at `limits.cpuMs`. Default true; off for kernels,
   * which live across many executions, each bounded by its own time limit.
   */
  processCpuLimit?: boolean;
  /**
   * For runcell's warm fork server only: stay in the host's pid namespace (so runcell can put
   * each forked run in its own cgroup) with the host's /proc, and allow nested user namespaces
   * (each run makes its own). Never for user code: runs confine themselves before it starts.
   */
  forkServer?: boolean;
}

export interface BwrapSandboxOptions {
  policy: SandboxPolicy;
  /** Paths of the helper programs; defaults are Debian's. */
  bwrapPath?: string;
  setprivPath?: string;
  prlimitPath?: string;
  /** Per-tree memory/pids limits and measurements; null when the host has no usable cgroups. */
  cgroups: CgroupManager | null;
  /**
   * Host uid (and gid) the sandbox runs as when runcell is root. Each live sandbox should get its
   * own so per-uid limits (RLIMIT_NPROC) count that sandbox alone. Ignored when not root.
   */
  hostUid?: number;
  /**
   * A directory every uid can traverse (runcell's 0711 runtime dir) for the mount points through
   * which a host workspace reaches the sandbox when runcell is root.
   */
  stagingRoot?: string;
  /** Files written once into runcell's runtime dir and mounted as /etc/passwd and /etc/group. */
  identityFiles?: { passwd: string; group: string };
  /**
   * A compiled seccomp filter (see seccomp.ts) that bubblewrap installs just before it starts
   * the program: the program and everything it starts can never make the calls it denies.
   */
  seccompFile?: string;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Closes every descriptor above 2, then execs the rest of the argv. bash, because dash cannot
 * name descriptors above 9; the list is read (in a subshell) before anything is closed.
 * --norc: Debian's bash sources /etc/bash.bashrc and ~/.bashrc when its stdin is a socket (it
 * takes itself for a remote shell), and a piped stdin is a socketpair, so without it root's
 * startup files would run in the launcher, as root.
 */
const CLOSE_INHERITED_FDS = [
  "/bin/bash",
  "--norc",
  "-c",
  // No redirection on the loop: bash would park the real stderr on a high fd that the loop closes.
  'for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done; ' +
    // Then, where the sandbox has a seccomp filter, open it as descriptor 3 for bwrap --seccomp.
    'if [ -n "$RUNCELL_SECCOMP" ]; then exec 3<"$RUNCELL_SECCOMP" || exit 125; fi; exec "$@"',
  "runcell-closefds",
];

/** The launcher chain's own environment; the program's is passed with --setenv. */
const LAUNCHER_ENV: Record<string, string> = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8" };

/** The uid and gid code sees inside every sandbox (a plain user, never root). */
export const SANDBOX_UID = 1000;

/** /etc entries a program needs to run; everything else in the host's /etc stays hidden. */
export const ETC_ALLOWLIST: readonly string[] = [
  "alternatives",
  "ld.so.cache",
  "ld.so.conf",
  "ld.so.conf.d",
  "localtime",
  "timezone",
  "nsswitch.conf",
  "host.conf",
  "gai.conf",
  "ssl",
  "ca-certificates",
  "ca-certificates.conf",
  "python3",
  "python3.11",
  "matplotlibrc",
  "fonts",
  "mime.types",
  "debian_version",
];
/** Needed only with network access. */
const ETC_NETWORK = ["resolv.conf", "hosts"];

/** Top-level host entries that are symlinks into /usr on merged-/usr systems (Debian 12). */
const USR_LINKS = ["bin", "sbin", "lib", "lib64", "lib32", "libx32"];

/**
 * Confines processes with bubblewrap: new user, pid, network, ipc, uts and cgroup namespaces;
 * a read-only view of /usr and an allowlist of /etc; private /tmp, /dev/shm and /workspace;
 * fresh /proc and /dev; an unprivileged uid, no capabilities, no_new_privs, a new session, and
 * death with runcell. Limits bubblewrap does not enforce are added here: a cgroup for memory
 * and pids (joined before exec, so no descendant escapes it) and rlimits for CPU time, file
 * size, open files and core dumps. Wall time and output size are the caller's to enforce.
 */
export class BwrapSandbox implements Sandbox {
  readonly kind = "bwrap";
  readonly kernelTransport = "ipc";
  readonly forwardsSignals = false;
  readonly policy: SandboxPolicy;
  readonly #options: BwrapSandboxOptions;

  constructor(options: BwrapSandboxOptions) {
    this.#options = options;
    this.policy = options.policy;
  }

  /** The full argv for `command`: launcher, rlimits, bubblewrap and its mounts. Exposed for tests and logs. */
  buildArgv(
    command: string[],
    env: Record<string, string> = {},
    binds: SpawnOptions["binds"] = [],
    cgroupProcs: readonly string[] = [],
    stagingDir?: string,
  ): string[] {
    const { policy } = this;
    const o = this.#options;
    const bwrap = o.bwrapPath ?? "/usr/bin/bwrap";
    const setpriv = o.setprivPath ?? "/usr/bin/setpriv";
    const prlimit = o.prlimitPath ?? "/usr/bin/prlimit";
    const limits = policy.limits;
    const isRoot = process.getuid?.() === 0;

    const sandbox: string[] = [
      bwrap,
      "--unshare-user",
      "--unshare-ipc",
      "--unshare-uts",
      "--unshare-cgroup-try",
      ...(policy.network ? [] : ["--unshare-net"]),
      ...(policy.forkServer ? [] : ["--unshare-pid"]),
      "--die-with-parent",
      "--new-session",
      "--uid",
      String(SANDBOX_UID),
      "--gid",
      String(SANDBOX_UID),
      ...(policy.forkServer ? [] : ["--disable-userns"]),
      "--hostname",
      "runcell",
      "--ro-bind",
      "/usr",
      "/usr",
    ];
    for (const link of USR_LINKS) {
      if (existsSync(`/${link}`)) sandbox.push("--symlink", `usr/${link}`, `/${link}`);
    }
    for (const entry of [...ETC_ALLOWLIST, ...(policy.network ? ETC_NETWORK : [])]) {
      sandbox.push("--ro-bind-try", `/etc/${entry}`, `/etc/${entry}`);
    }
    if (o.identityFiles) {
      sandbox.push(
        "--ro-bind",
        o.identityFiles.passwd,
        "/etc/passwd",
        "--ro-bind",
        o.identityFiles.group,
        "/etc/group",
      );
    }
    const size = String(limits.tmpBytes);
    sandbox.push(
      ...(policy.forkServer ? ["--bind", "/proc", "/proc"] : ["--proc", "/proc"]),
      "--dev",
      "/dev",
      "--size",
      size,
      "--tmpfs",
      "/tmp",
      "--size",
      size,
      "--tmpfs",
      "/dev/shm",
      "--dir",
      "/var",
      "--symlink",
      "../tmp",
      "/var/tmp",
    );
    if (policy.workspace) {
      // As root, bound from a staging mount point (see below), so the sandbox's uid needs no
      // search permission on the directory's ancestors (e.g. a notebook under a 0700 home).
      const source = stagingDir ?? policy.workspace.hostPath;
      sandbox.push(policy.workspace.readOnly ? "--ro-bind" : "--bind", source, "/workspace");
    } else {
      sandbox.push("--size", size, "--tmpfs", "/workspace");
    }
    for (const path of policy.readOnlyPaths ?? []) sandbox.push("--ro-bind", path, path);
    for (const bind of binds)
      sandbox.push(bind.writable ? "--bind" : "--ro-bind", bind.path, bind.target ?? bind.path);
    // The program's environment is set by bwrap inside the sandbox: the launcher chain outside
    // runs as root and must never see caller-supplied variables such as LD_PRELOAD.
    // The sandbox's own root (a tmpfs bwrap makes, with no size limit) is read-only once every
    // mount is in place; /tmp, /dev/shm and /workspace are separate, sized, writable tmpfs.
    sandbox.push("--remount-ro", "/");
    sandbox.push("--clearenv");
    for (const [name, value] of Object.entries(env)) {
      if (!ENV_NAME.test(name))
        throw new InvalidArgumentError(
          "INVALID_ENV",
          `invalid environment variable name ${JSON.stringify(name)}`,
        );
      if (value.includes("\0"))
        throw new InvalidArgumentError("INVALID_ENV", `environment variable ${name} contains a NUL byte`);
      sandbox.push("--setenv", name, value);
    }
    if (o.seccompFile) sandbox.push("--seccomp", "3");
    sandbox.push("--chdir", "/workspace", "--", ...command);

    // rlimits, set as the unprivileged user so they can only be lowered by what runs inside.
    const cpuSeconds = Math.max(1, Math.ceil(limits.cpuMs / 1000));
    const rlimits = [
      prlimit,
      ...(policy.processCpuLimit === false ? [] : [`--cpu=${cpuSeconds}:${cpuSeconds + 1}`]),
      `--fsize=${limits.fileBytes}`,
      `--nofile=${limits.openFiles}`,
      "--core=0",
      // Without a pids cgroup, RLIMIT_NPROC under a per-sandbox uid is the process cap. With one,
      // the cgroup is the cap (it records the hit, in pids.events) and no RLIMIT_NPROC is set:
      // that rlimit counts every process of the uid host-wide, so it would let two runcell
      // processes that happen to pick the same uid starve each other.
      ...(isRoot && o.hostUid !== undefined && !o.cgroups?.support.pids ? [`--nproc=${limits.pids}`] : []),
      ...(o.cgroups?.support.memory || policy.addressSpaceFallback === false
        ? []
        : [`--as=${limits.memoryBytes}`]),
      "--",
    ];
    const identity =
      isRoot && o.hostUid !== undefined
        ? ["--reuid", String(o.hostUid), "--regid", String(o.hostUid), "--clear-groups"]
        : [];
    // pdeathsig is set after the uid change (setpriv orders it so), which would otherwise clear it.
    // A parent that died before setpriv armed it sends nothing, which leaves the sandbox running
    // with nobody to end it (seen when runcell is SIGKILLed while a kernel starts): a shell
    // started once the signal is armed compares its parent with the one that spawned the chain.
    const dropPrivileges = [
      setpriv,
      ...identity,
      "--pdeathsig",
      "KILL",
      "--",
      "/bin/sh",
      "-c",
      `[ -z "$${PARENT_PID_ENV}" ] || [ "$PPID" = "$${PARENT_PID_ENV}" ] || exit 125; exec "$@"`,
      "runcell-parent",
    ];
    // Join the cgroups first, as root and before anything can fork; then (still as root, in a
    // private mount namespace that only this sandbox sees) bind the workspace onto its staging
    // mount point; then drop privileges.
    const stage =
      policy.workspace && stagingDir
        ? [
            "/usr/bin/unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            'mount --bind -- "$1" "$2" || exit 125; shift 2; exec "$@"',
            "runcell-stage",
            policy.workspace.hostPath,
            stagingDir,
          ]
        : [];
    // First of all, close every descriptor above 2 that runcell itself inherited without
    // close-on-exec: nothing of runcell's may reach the sandbox.
    return [
      ...CLOSE_INHERITED_FDS,
      ...joinCgroupArgv(cgroupProcs, [...stage, ...dropPrivileges, ...rlimits, ...sandbox]),
    ];
  }

  /** Whether this sandbox enforces a memory limit at all (cgroup, or the RLIMIT_AS fallback). */
  get enforcesMemory(): boolean {
    return Boolean(this.#options.cgroups?.support.memory) || this.policy.addressSpaceFallback !== false;
  }

  /** Whether the pids limit is enforced (pids cgroup, or RLIMIT_NPROC under a per-sandbox uid). */
  get enforcesPids(): boolean {
    return (
      Boolean(this.#options.cgroups?.support.pids) ||
      (process.getuid?.() === 0 && this.#options.hostUid !== undefined)
    );
  }

  async spawn(options: SpawnOptions): Promise<SandboxProcess> {
    const cgroups = this.#options.cgroups;
    let cgroup: CgroupHandle | undefined;
    if (cgroups) {
      cgroup = await cgroups.create(`sb-${randomUUID()}`, {
        memoryBytes: cgroups.support.memory ? this.policy.limits.memoryBytes : null,
        pids: cgroups.support.pids ? this.policy.limits.pids : null,
      });
    }
    const stagingDir =
      this.policy.workspace && process.getuid?.() === 0 && this.#options.stagingRoot
        ? join(this.#options.stagingRoot, `ws-${randomUUID()}`)
        : undefined;
    try {
      if (stagingDir) await mkdir(stagingDir, { mode: 0o755 });
      const proc = await ManagedProcess.spawn({
        argv: this.buildArgv(options.argv, options.env, options.binds, cgroup?.procsFiles ?? [], stagingDir),
        env: this.#options.seccompFile
          ? { ...LAUNCHER_ENV, RUNCELL_SECCOMP: this.#options.seccompFile }
          : LAUNCHER_ENV,
        output: options.output ?? "tail",
        input: options.input,
        tellParent: true,
        tailBytes: options.stderrTailBytes,
        ...(options.strategy ? { strategy: options.strategy } : {}),
        usage: cgroup ? () => cgroup.stats() : undefined,
        onDispose: async () => {
          await cgroup?.dispose();
          if (stagingDir) await rmdir(stagingDir).catch(() => undefined);
        },
      });
      return proc;
    } catch (error) {
      await cgroup?.dispose();
      if (stagingDir) await rmdir(stagingDir).catch(() => undefined);
      throw error;
    }
  }
}
