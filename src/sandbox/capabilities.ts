/**
 * What this host offers for confining code: bubblewrap, user namespaces, cgroups, the util-linux
 * helpers (setpriv, prlimit) and seccomp. Every probe runs in parallel and is bounded by a
 * timeout, so this can run at server start. Nothing here reads process.env: the PATH to search is
 * an argument.
 */
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, readFile, stat } from "node:fs/promises";
import { delimiter, join } from "node:path";
import type { CgroupManager, CgroupSupport } from "./cgroups-types.js";
import { type DetectCgroupsOptions, detectCgroups } from "./cgroups.js";
import { deniedSyscalls, seccompSupported } from "./seccomp.js";

export interface ProbeHostOptions {
  /** The PATH searched for bwrap, setpriv, prlimit and unshare after /usr/bin. Default /usr/local/bin:/usr/bin:/bin. */
  path?: string;
  /** Bound of each probe that runs a program. Default 3000 ms. */
  timeoutMs?: number;
  /** A manager detected already (reused, not detected again). */
  cgroups?: CgroupManager;
  /** Passed to detectCgroups when `cgroups` is not given. */
  cgroupOptions?: DetectCgroupsOptions;
}

/** A helper program runcell runs; `fix` installs it when it is missing. */
export interface ToolCapability {
  path: string | null;
  fix: string | null;
}

export interface BubblewrapCapability extends ToolCapability {
  /** e.g. "0.8.0", from `bwrap --version`. */
  version: string | null;
  /** `bwrap --unshare-all --ro-bind / / --die-with-parent true` ran and exited 0. */
  works: boolean;
  /** Why it does not work (its stderr, or the probe's failure). */
  error: string | null;
}

export interface UserNamespaceCapability {
  /** An unprivileged user can create a user namespace (null: could not be tested). */
  unprivileged: boolean | null;
  /** /proc/sys/user/max_user_namespaces (0 disables them for everyone). */
  maxUserNamespaces: number | null;
  /** /proc/sys/kernel/unprivileged_userns_clone (Debian and Ubuntu kernels; null when absent). */
  unprivilegedUsernsClone: number | null;
  /** /proc/sys/kernel/apparmor_restrict_unprivileged_userns (Ubuntu 23.10+; null when absent). */
  apparmorRestricted: number | null;
  detail: string;
  fix: string | null;
}

export interface SeccompCapability {
  /** The kernel has seccomp (CONFIG_SECCOMP): /proc/self/status has a Seccomp field. */
  available: boolean;
  /** The kernel has seccomp filters (CONFIG_SECCOMP_FILTER): /proc/sys/kernel/seccomp/actions_avail. */
  filter: boolean;
  /** runcell's own mode: 0 none, 1 strict, 2 filter (runcell itself runs under a filter). */
  mode: number | null;
  fix: string | null;
}

export interface HostCapabilities {
  bubblewrap: BubblewrapCapability;
  userNamespaces: UserNamespaceCapability;
  /** runcell runs as uid 0. */
  root: boolean;
  cgroups: CgroupSupport;
  setpriv: ToolCapability;
  prlimit: ToolCapability;
  seccomp: SeccompCapability;
}

const DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin";
/** An unprivileged uid that exists on every Debian system (nobody), for the userns test as root. */
const NOBODY = "65534";

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The program could not be started or ran out of time. */
  error: string | null;
}

/** Runs a program with an empty-but-PATH environment, bounded by `timeoutMs` (then SIGKILL). */
function run(file: string, args: string[], path: string, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      {
        env: { PATH: path },
        timeout: timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 64 * 1024,
        encoding: "utf8",
      },
      (error, stdout, stderr) => {
        if (!error) return resolve({ code: 0, stdout, stderr, error: null });
        const e = error as NodeJS.ErrnoException & {
          code?: unknown;
          killed?: boolean;
          signal?: string | null;
        };
        if (e.killed || e.signal === "SIGKILL") {
          return resolve({ code: null, stdout, stderr, error: `timed out after ${timeoutMs} ms` });
        }
        if (typeof e.code === "number") return resolve({ code: e.code, stdout, stderr, error: null });
        resolve({ code: null, stdout, stderr, error: e.message });
      },
    );
  });
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return null;
  }
}

async function readInt(path: string): Promise<number | null> {
  const text = await readText(path);
  if (text === null) return null;
  const value = Number.parseInt(text.trim(), 10);
  return Number.isNaN(value) ? null : value;
}

/** The first executable regular file named `name` in /usr/bin, then in `path`. */
export async function findProgram(name: string, path: string): Promise<string | null> {
  const dirs = ["/usr/bin", ...path.split(delimiter).filter((d) => d.startsWith("/"))];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      if ((await stat(candidate)).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** The install command for `pkg` with this distribution's package manager (apt-get by default). */
async function installCommand(pkg: string): Promise<string> {
  const osRelease = (await readText("/etc/os-release")) ?? "";
  const field = (key: string) =>
    new RegExp(`^${key}="?([^"\\n]*)"?$`, "m").exec(osRelease)?.[1]?.toLowerCase().split(/\s+/) ?? [];
  const ids = [...field("ID"), ...field("ID_LIKE")];
  if (ids.some((id) => ["fedora", "rhel", "centos", "rocky", "almalinux"].includes(id)))
    return `dnf install -y ${pkg}`;
  if (ids.includes("alpine")) return `apk add ${pkg}`;
  if (ids.includes("arch")) return `pacman -S --noconfirm ${pkg}`;
  if (ids.some((id) => id.includes("suse"))) return `zypper install -y ${pkg}`;
  return `apt-get install -y ${pkg}`;
}

function firstLine(text: string): string {
  return text.trim().split("\n").slice(-3).join(" | ").slice(0, 300);
}

async function probeBubblewrap(path: string, timeoutMs: number): Promise<BubblewrapCapability> {
  const bwrap = await findProgram("bwrap", path);
  if (!bwrap) {
    return {
      path: null,
      version: null,
      works: false,
      error: "bwrap not found",
      fix: await installCommand("bubblewrap"),
    };
  }
  const [version, trial] = await Promise.all([
    run(bwrap, ["--version"], path, timeoutMs),
    run(bwrap, ["--unshare-all", "--ro-bind", "/", "/", "--die-with-parent", "true"], path, timeoutMs),
  ]);
  const works = trial.code === 0 && trial.error === null;
  return {
    path: bwrap,
    version: /(\d+\.\d+(?:\.\d+)?)/.exec(version.stdout)?.[1] ?? null,
    works,
    error: works ? null : (trial.error ?? (firstLine(trial.stderr) || `exit ${trial.code}`)),
    fix: null, // filled in by probeHost, which knows about user namespaces
  };
}

async function probeUserNamespaces(
  root: boolean,
  path: string,
  timeoutMs: number,
): Promise<UserNamespaceCapability> {
  const [maxUserNamespaces, unprivilegedUsernsClone, apparmorRestricted, unshare, setpriv] =
    await Promise.all([
      readInt("/proc/sys/user/max_user_namespaces"),
      readInt("/proc/sys/kernel/unprivileged_userns_clone"),
      readInt("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
      findProgram("unshare", path),
      findProgram("setpriv", path),
    ]);
  // The real test: create a user namespace as an unprivileged user (as nobody when we are root).
  let unprivileged: boolean | null = null;
  let trialError = "";
  if (unshare && (!root || setpriv)) {
    const argv = root
      ? [
          setpriv!,
          ["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--", unshare, "--user", "--", "true"],
        ]
      : [unshare, ["--user", "--", "true"]];
    const result = await run(argv[0] as string, argv[1] as string[], path, timeoutMs);
    unprivileged = result.code === 0;
    trialError = result.error ?? firstLine(result.stderr);
  } else if (maxUserNamespaces === 0 || unprivilegedUsernsClone === 0) {
    unprivileged = false;
  }
  const fixes: string[] = [];
  if (maxUserNamespaces === 0) fixes.push("sysctl -w user.max_user_namespaces=15000");
  if (unprivilegedUsernsClone === 0) fixes.push("sysctl -w kernel.unprivileged_userns_clone=1");
  if (apparmorRestricted === 1) fixes.push("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0");
  let detail: string;
  if (unprivileged === true) detail = "unprivileged users can create user namespaces";
  else if (unprivileged === false) {
    detail = `unprivileged users cannot create user namespaces${trialError ? ` (${trialError})` : ""}`;
  } else detail = "not tested (unshare or setpriv missing)";
  return {
    unprivileged,
    maxUserNamespaces,
    unprivilegedUsernsClone,
    apparmorRestricted,
    detail,
    fix: unprivileged === false && fixes.length > 0 ? fixes.join(" && ") : null,
  };
}

async function probeSeccomp(): Promise<SeccompCapability> {
  const [status, actions] = await Promise.all([
    readText("/proc/self/status"),
    readText("/proc/sys/kernel/seccomp/actions_avail"),
  ]);
  const match = /^Seccomp:\s*(\d+)/m.exec(status ?? "");
  const available = match !== null;
  const filter = actions !== null && actions.includes("errno");
  return {
    available,
    filter,
    mode: match ? Number(match[1]) : null,
    fix:
      available && filter
        ? null
        : "use a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y (every distribution kernel is)",
  };
}

async function probeTool(name: string, pkg: string, path: string): Promise<ToolCapability> {
  const found = await findProgram(name, path);
  return { path: found, fix: found ? null : await installCommand(pkg) };
}

/**
 * Probes this host, every probe in parallel and each bounded by `timeoutMs`. Never throws: what
 * cannot be found or run is reported as missing, with a `fix` command where one exists.
 */
export async function probeHost(options: ProbeHostOptions = {}): Promise<HostCapabilities> {
  const path = options.path ?? DEFAULT_PATH;
  const timeoutMs = options.timeoutMs ?? 3_000;
  const root = process.getuid?.() === 0;
  const [bubblewrap, userNamespaces, cgroups, setpriv, prlimit, seccomp] = await Promise.all([
    probeBubblewrap(path, timeoutMs),
    probeUserNamespaces(root, path, timeoutMs),
    options.cgroups ? Promise.resolve(options.cgroups) : detectCgroups(options.cgroupOptions),
    probeTool("setpriv", "util-linux", path),
    probeTool("prlimit", "util-linux", path),
    probeSeccomp(),
  ]);
  if (bubblewrap.path && !bubblewrap.works) {
    bubblewrap.fix =
      !root && userNamespaces.fix
        ? userNamespaces.fix
        : "allow namespaces where runcell runs (in a container: docker run --security-opt seccomp=unconfined " +
          "--security-opt apparmor=unconfined --cap-add SYS_ADMIN, or --privileged)";
  }
  return { bubblewrap, userNamespaces, root, cgroups: { ...cgroups.support }, setpriv, prlimit, seccomp };
}

// ---------------------------------------------------------------------------------------------
// What the capabilities mean for runcell

export type CheckState = "ok" | "fallback" | "missing";

export interface HostCheck {
  /** Short name, e.g. `sandbox`, `memory limit`. */
  name: string;
  state: CheckState;
  /** What is in force. */
  detail: string;
  /** The command (or step) that makes it `ok`; null when it is. */
  fix: string | null;
}

export interface HostAssessment {
  checks: HostCheck[];
  /** bubblewrap works and every limit is enforced, by cgroups or at least by rlimits. */
  confinable: boolean;
}

/** Turns probed capabilities into checks with states and a verdict (pure: no I/O). */
export function assessHost(caps: HostCapabilities): HostAssessment {
  const checks: HostCheck[] = [];
  const cg = caps.cgroups;
  const cgFix = (controller: string): string => {
    const prefixes = controller === "cpu" ? ["cpu:", "cpuacct:"] : [`${controller}:`];
    const note =
      cg.notes.find((n) => prefixes.some((p) => n.startsWith(p)) && n.includes("Fix:")) ??
      cg.notes.find((n) => n.includes("Fix:"));
    if (note) return note.slice(note.indexOf("Fix:") + 4).trim();
    return cg.notes[0] ?? "run runcell as root on a host with a writable cgroup filesystem";
  };
  const rlimits = caps.prlimit.path !== null;
  const bw = caps.bubblewrap;

  checks.push(
    bw.works
      ? {
          name: "sandbox",
          state: "ok",
          detail: `bubblewrap ${bw.version ?? "(unknown version)"} at ${bw.path}: a sandbox with every namespace starts`,
          fix: null,
        }
      : {
          name: "sandbox",
          state: "missing",
          detail: `${bw.path ? `bubblewrap at ${bw.path} fails: ${bw.error}` : "bubblewrap is not installed"}; runcell refuses to run code unless --sandbox none (no isolation at all)`,
          fix: bw.fix,
        },
  );

  const ns = caps.userNamespaces;
  if (caps.root) {
    checks.push({
      name: "user namespaces",
      state: "ok",
      detail: `runcell runs as root, so bubblewrap needs no unprivileged user namespaces (${ns.detail})`,
      fix: null,
    });
  } else if (ns.unprivileged === true) {
    checks.push({ name: "user namespaces", state: "ok", detail: ns.detail, fix: null });
  } else {
    checks.push({
      name: "user namespaces",
      state: bw.works ? "fallback" : "missing",
      detail: bw.works
        ? `${ns.detail}; bubblewrap works anyway (setuid)`
        : `${ns.detail}; bubblewrap cannot create its namespaces as this user`,
      fix: ns.fix,
    });
  }

  const limit = (
    name: string,
    ok: boolean,
    okDetail: string,
    fallbackDetail: string,
    missingDetail: string,
    controller: string,
  ) => {
    if (ok) checks.push({ name, state: "ok", detail: okDetail, fix: null });
    else if (rlimits)
      checks.push({ name, state: "fallback", detail: fallbackDetail, fix: cgFix(controller) });
    else checks.push({ name, state: "missing", detail: missingDetail, fix: caps.prlimit.fix });
  };
  limit(
    "memory limit",
    cg.memory,
    `memory cgroup (${cg.version}): one limit for the whole process tree, OOM kills reported`,
    "RLIMIT_AS per process: each process may use the limit (a tree of N processes up to N times), and it counts address space, not memory used",
    "no memory limit: no memory cgroup and no prlimit",
    "memory",
  );
  limit(
    "process limit",
    cg.pids,
    `pids cgroup (${cg.version}): one cap on processes and threads of the whole tree`,
    "RLIMIT_NPROC: counts every process of the sandbox's uid, so it needs one uid per sandbox",
    "no process limit: fork bombs are stopped only by the wall-clock timer",
    "pids",
  );
  limit(
    "CPU time",
    cg.cpu,
    `CPU accounting (${cg.version}): cpu_ms of the whole tree; RLIMIT_CPU per process`,
    "RLIMIT_CPU per process; cpu_ms of the tree is not measured",
    "no CPU limit: only the wall-clock timer stops busy code",
    "cpu",
  );
  if (cg.freezer) {
    checks.push({
      name: "kill tree",
      state: "ok",
      detail:
        cg.version === "v2"
          ? "cgroup.kill or freeze, then SIGKILL every process in the group"
          : "freeze the group, SIGKILL every process in it, thaw",
      fix: null,
    });
  } else {
    checks.push({
      name: "kill tree",
      state: "fallback",
      detail: bw.works
        ? "SIGKILL to the sandbox's PID namespace init ends every process inside"
        : "SIGKILL to the process group (a process that calls setsid escapes)",
      fix: cgFix("freezer"),
    });
  }

  checks.push(
    rlimits
      ? {
          name: "rlimits",
          state: "ok",
          detail: `prlimit at ${caps.prlimit.path}: file size, open files, core dumps, CPU time`,
          fix: null,
        }
      : {
          name: "rlimits",
          state: "missing",
          detail: "prlimit not found: file size, open files and CPU time are not limited",
          fix: caps.prlimit.fix,
        },
  );
  checks.push(
    caps.setpriv.path
      ? {
          name: "privileges",
          state: "ok",
          detail: `setpriv at ${caps.setpriv.path}: unprivileged uid, parent-death signal`,
          fix: null,
        }
      : {
          name: "privileges",
          state: "missing",
          detail: "setpriv not found: sandboxes cannot drop to an unprivileged uid or die with runcell",
          fix: caps.setpriv.fix,
        },
  );
  const denied = deniedSyscalls("run").length;
  checks.push(
    !(caps.seccomp.available && caps.seccomp.filter)
      ? {
          name: "seccomp",
          state: "missing",
          detail: "no seccomp filters: system calls cannot be filtered (namespaces still apply)",
          fix: caps.seccomp.fix,
        }
      : seccompSupported()
        ? {
            name: "seccomp",
            state: "ok",
            detail: `every sandbox gets runcell's filter: ${denied} system calls denied (keyrings, bpf, userfaultfd, io_uring, ptrace, mounting…)`,
            fix: null,
          }
        : {
            name: "seccomp",
            state: "missing",
            detail: `runcell builds its seccomp filter for x86-64 only, not ${process.arch}: system calls are not filtered (namespaces still apply)`,
            fix: null,
          },
  );

  const required = new Set(["sandbox", "memory limit", "process limit", "CPU time", "rlimits", "privileges"]);
  const confinable = bw.works && checks.every((c) => !required.has(c.name) || c.state !== "missing");
  return { checks, confinable };
}
