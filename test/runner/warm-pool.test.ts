/**
 * The warm path of one-shot Python runs: forks of a pre-started, sandboxed interpreter.
 * What it attacks: state or namespaces shared between runs that come from one server, and
 * limits that a fork might escape. Deterministic: every assertion is on the records and on
 * what the runs report about themselves; nothing depends on timing.
 */
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/errors.js";
import { prepareRuntimeDir } from "../../src/kernels/kernel-manager.js";
import { Runner } from "../../src/runner/runner.js";
import { WarmPool } from "../../src/runner/warm-pool.js";
import { detectCgroups } from "../../src/sandbox/cgroups.js";
import type { CgroupManager } from "../../src/sandbox/cgroups-types.js";
import { DEFAULT_LIMITS } from "../../src/sandbox/limits.js";
import { SandboxFactory } from "../../src/sandbox/sandbox-factory.js";
import { seccompSupported } from "../../src/sandbox/seccomp.js";

let dir: string;
let runtimeDir: string;
let cgroups: CgroupManager;
let pool: WarmPool;
let runner: Runner;
let usable = false;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "runcell-warm-"));
  chmodSync(dir, 0o711);
  runtimeDir = join(dir, "rt");
  await prepareRuntimeDir(runtimeDir, { sandboxed: true });
  cgroups = await detectCgroups({ parentName: `runcell-warm-test-${process.pid}` });
  usable = cgroups.support.memory && cgroups.support.pids;
  const sandboxes = new SandboxFactory({ mode: "bwrap", cgroups, runtimeDir });
  pool = new WarmPool({
    sandboxes,
    cgroups,
    runtimeDir,
    python: "/usr/bin/python3",
    standbyLimits: DEFAULT_LIMITS,
  });
  runner = new Runner({ sandboxes, runtimeDir, warm: pool });
  if (usable) await pool.warm();
});

afterAll(async () => {
  await runner?.settle();
  await pool?.dispose();
  rmSync(dir, { recursive: true, force: true });
  // The manager's parent group in each hierarchy is this suite's own; remove it once empty.
  for (const hierarchy of readdirSync("/sys/fs/cgroup")) {
    const root = join("/sys/fs/cgroup", hierarchy);
    let entries: string[];
    try {
      entries = readdirSync(root, { recursive: true }).map(String);
    } catch {
      continue;
    }
    for (const path of entries.filter((p) => p.endsWith(`runcell-warm-test-${process.pid}`))) {
      try {
        rmdirSync(join(root, path));
      } catch {
        // not empty or not ours: leave it
      }
    }
  }
});

const run = (
  code: string,
  extra: Parameters<Runner["runOnce"]>[0] extends infer O ? Partial<O> : never = {},
) => runner.runOnce({ language: "python", code, ...extra });

const SELF =
  "import os\n" +
  "ns = {n: os.readlink(f'/proc/self/ns/{n}') for n in ('pid', 'net', 'mnt', 'user', 'ipc', 'uts')}\n" +
  "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n" +
  "print({'pid': os.getpid(), 'uid': os.getuid(), 'cap': status['CapEff'].strip(), 'nnp': status['NoNewPrivs'].strip(), 'ns': ns, 'cwd': os.getcwd(), 'tmp': os.listdir('/tmp'), 'ws': os.listdir('.')})\n";

describe.skipIf(false)("warm one-shot runs", () => {
  it.skipIf(!process.getuid || process.getuid() !== 0)("requires root for cgroups (else skipped)", () => {
    expect(usable).toBe(true);
  });

  it("run in fresh namespaces as pid 1, uid 1000, without capabilities, sharing nothing with the previous run", async () => {
    if (!usable) return;
    const first = await run(
      `${SELF}open('/tmp/left', 'w').write('x'); open('left.txt', 'w').write('x'); SECRET = 1`,
    );
    const second = await run(`${SELF}print('SECRET' in globals(), os.environ.get('LEAK'))`, {});
    for (const record of [first, second]) expect(record.status).toBe("completed");
    const [a, b] = [first, second].map((r) => JSON.parse(r.stdout.split("\n")[0]!.replaceAll("'", '"')));
    expect(a).toMatchObject({
      pid: 1,
      uid: 1000,
      cap: "0000000000000000",
      nnp: "1",
      cwd: "/workspace",
      tmp: [],
      ws: [],
    });
    expect(b).toMatchObject({ pid: 1, uid: 1000, tmp: [], ws: [] });
    for (const kind of ["pid", "net", "mnt", "user", "ipc", "uts"]) expect(a.ns[kind]).not.toBe(b.ns[kind]);
    expect(second.stdout.split("\n")[1]).toBe("False None");
  });

  it("cannot make user namespaces, become root, or see the host's files", async () => {
    if (!usable) return;
    const record = await run(
      "import os, ctypes\n" +
        "libc = ctypes.CDLL(None, use_errno=True)\n" +
        "print(libc.unshare(0x10000000), ctypes.get_errno())\n" +
        "try:\n    os.setuid(0)\nexcept OSError as e:\n    print('setuid', e.errno)\n" +
        "print(sorted(os.listdir('/')), os.path.exists('/etc/shadow'), os.path.exists('/root'))\n",
    );
    const [unshare, setuid, listing] = record.stdout.trim().split("\n");
    expect(unshare).toMatch(/^-1 (1|28)$/); // EPERM, or ENOSPC from max_user_namespaces = 0
    expect(setuid).toMatch(/^setuid (1|22)$/);
    expect(listing).toContain("False False");
    expect(listing).not.toContain("'home'");
  });

  it("enforces memory, time, CPU and output limits per run, and the next run is unaffected", async () => {
    if (!usable) return;
    const [memory, time, cpu, output] = await Promise.all([
      run("x = []\nwhile True: x.append(bytearray(10**7))", { limits: { memoryBytes: 64 * 1024 * 1024 } }),
      run("import time\ntime.sleep(60)", { limits: { timeMs: 1000 } }),
      run("while True: pass", { limits: { cpuMs: 1000, timeMs: 20_000 } }),
      run("while True: print('x' * 100)", { limits: { outputBytes: 10_000 } }),
    ]);
    expect(memory).toMatchObject({ status: "failed", limit: "memory", error: { category: "memory" } });
    expect(time).toMatchObject({ status: "timed_out", limit: "time" });
    expect(cpu).toMatchObject({ status: "timed_out", limit: "time", exit_code: 152 });
    expect(output).toMatchObject({ status: "failed", limit: "output", truncated: true });
    expect((await run("print('fine')")).stdout).toBe("fine\n");
  });

  it("contains a fork bomb in the run's own pids cgroup", async () => {
    if (!usable) return;
    const record = await run(
      "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
      {
        limits: { timeMs: 2000 },
      },
    );
    expect(record).toMatchObject({ status: "timed_out", limit: "time" });
    expect((await run("print('after')")).stdout).toBe("after\n");
  });

  it("reports errors as python3 does, without the server's own frames", async () => {
    if (!usable) return;
    const record = await run("def f():\n    return 1 / 0\nf()");
    expect(record.error).toMatchObject({ name: "ZeroDivisionError", category: "runtime" });
    expect(record.stderr).toContain('File "/run/runcell/main.py", line 2, in f');
    expect(record.stderr).toContain("return 1 / 0");
    expect(record.stderr).not.toContain("zygote");
    const exit = await run("import sys\nprint('bye')\nsys.exit(4)");
    expect(exit).toMatchObject({ status: "failed", exit_code: 4, stdout: "bye\n" });
  });

  it("serves the pandas profile with pandas already imported", async () => {
    if (!usable) return;
    const record = await run("import sys\nprint('pandas' in sys.modules)", { profile: "pandas" });
    expect(record.stdout).toBe("True\n");
    const plain = await run("import sys\nprint('pandas' in sys.modules)");
    expect(plain.stdout).toBe("False\n");
  });

  it("rejects an unknown profile, or a profile on a run that cannot be warm", async () => {
    if (!usable) return;
    await expect(run("1", { profile: "nope" })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(run("1", { profile: "pandas", network: true })).rejects.toThrow(
      /profiles apply to python runs/,
    );
  });

  it("runs 20 at once, each with only its own output, and keeps a bounded number of run cgroups", async () => {
    if (!usable) return;
    const records = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        run(`import time, random\ntime.sleep(random.random() / 20)\nprint(${i})`),
      ),
    );
    records.forEach((record, i) => expect(record.stdout).toBe(`${i}\n`));
    await runner.settle();
    // Standbys (4 per profile, 2 more being prepared) and emptied groups kept for reuse (8)
    // keep a group; the other finished runs' groups are gone.
    for (const parent of warmParents()) {
      expect(warmGroups(parent).length).toBeLessThanOrEqual(2 * (4 + 2) + 8);
    }
  });

  it("gives every run its own random state, numpy's included", async () => {
    if (!usable) return;
    const code = "import random, numpy\nprint(random.random(), numpy.random.rand())";
    const draws = await Promise.all([1, 2, 3].map(() => run(code, { profile: "pandas" })));
    const [python, numpy] = [0, 1].map((column) => draws.map((r) => r.stdout.trim().split(" ")[column]));
    expect(new Set(python).size).toBe(3);
    expect(new Set(numpy).size).toBe(3);
  });

  it("reports each run's own memory and CPU, though its cgroup served a run before", async () => {
    if (!usable) return;
    // Enough runs that the small ones below land in groups that served the big ones.
    await Promise.all(
      Array.from({ length: 8 }, () =>
        run("x = bytearray(b'\\x01') * (100 * 1024 * 1024)\nt = 0\nfor i in range(4_000_000): t += i"),
      ),
    );
    await runner.settle();
    const small = await Promise.all(Array.from({ length: 12 }, () => run("print(1)")));
    for (const record of small) {
      expect(record.peak_memory_bytes).toBeLessThan(50 * 1024 * 1024);
      expect(record.cpu_ms).toBeLessThan(100);
    }
  });

  it("runs under runcell's seccomp filter: kernel attack surface calls fail, mount too", async () => {
    if (!usable || !seccompSupported()) return;
    const record = await run(
      [
        "import ctypes, errno",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "out = []",
        "for nr in (250, 321, 323, 425, 165):  # keyctl, bpf, userfaultfd, io_uring_setup, mount",
        "    rc = libc.syscall(nr, 0, 0, 0, 0, 0)",
        "    out.append(errno.errorcode[ctypes.get_errno()] if rc == -1 else 'ok')",
        "print(*out, open('/proc/self/status').read().split('Seccomp:')[1].split()[0])",
      ].join("\n"),
    );
    // mount is denied in the run (the server's own filter lets the server mount for its runs).
    expect(record.stdout).toBe("EPERM EPERM EPERM EPERM EPERM 2\n");
  });

  it("a run that reports its own exit early and goes on is ended: nothing of it survives", async () => {
    if (!usable) return;
    // fd 4 is where a run says how it ended, just before exiting; code can write there too.
    const record = await run(
      "import ctypes, os, time\n" +
        "ctypes.CDLL(None).prctl(15, b'forged-exit', 0, 0, 0)  # PR_SET_NAME, seen from the host\n" +
        "print(os.getpid(), flush=True)\nos.write(4, b'0')\nos.close(1)\nos.close(2)\ntime.sleep(60)",
      { limits: { timeMs: 20_000 } },
    );
    expect(record).toMatchObject({ status: "completed", exit_code: 0, stdout: "1\n" });
    expect(record.duration_ms!).toBeLessThan(20_000);
    await runner.settle();
    // Its process (pid 1 of its namespace) was killed before its cgroup was released.
    const named = (name: string) =>
      readdirSync("/proc")
        .filter((entry) => /^\d+$/.test(entry))
        .filter((pid) => {
          try {
            return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === name;
          } catch {
            return false;
          }
        });
    expect(named("forged-exit")).toEqual([]);
    // The name is visible from here while such a run lives (so the check above can fail).
    const alive = run(
      "import ctypes, time\nctypes.CDLL(None).prctl(15, b'named-run', 0, 0, 0)\nprint('up', flush=True)\ntime.sleep(2)",
    );
    let seen: string[] = [];
    for (let i = 0; i < 100 && seen.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      seen = named("named-run");
    }
    expect(seen.length).toBe(1);
    await alive;
  });

  it("starts a new fork server when its spawner or the server itself is killed", async () => {
    if (!usable) return;
    const script = join(runtimeDir, "warm", "zygote.py");
    const procs = () =>
      readdirSync("/proc")
        .filter((entry) => /^\d+$/.test(entry))
        .map((pid) => {
          try {
            const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
            const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
            const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
            return { pid: Number(pid), ppid, cmdline };
          } catch {
            return null;
          }
        })
        .filter(
          (p): p is { pid: number; ppid: number; cmdline: string } => p?.cmdline.includes(script) ?? false,
        );
    const gone = async (pid: number) => {
      for (let i = 0; i < 250; i++) {
        if (!existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z "))
          return true;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return false;
    };
    for (const victim of ["spawner", "server"] as const) {
      expect((await run("print('before')")).stdout).toBe("before\n");
      const all = procs();
      // The servers' parent is bubblewrap; a spawner's parent is a server; runs hang below it.
      const servers = all.filter((p) => !all.some((q) => q.pid === p.ppid));
      const spawners = all.filter((p) => servers.some((q) => q.pid === p.ppid));
      expect(servers.length).toBeGreaterThan(0);
      expect(spawners.length).toBe(servers.length);
      const target = (victim === "server" ? servers : spawners)[0]!;
      const server = victim === "server" ? target : servers.find((q) => q.pid === target.ppid)!;
      process.kill(target.pid, "SIGKILL");
      // Either way the server goes (a server without its spawner exits), and its runs with it.
      expect(await gone(server.pid)).toBe(true);
      const after = await run("print('after')");
      expect(after.stdout, `${victim}: ${after.stderr}`).toBe("after\n");
    }
  });

  it("removes every standby's and spare's cgroup on dispose", async () => {
    if (!usable) return;
    await runner.settle();
    await pool.dispose();
    for (const parent of warmParents()) {
      expect(warmGroups(parent)).toEqual([]);
      // Nor the fork servers' own sandbox groups, the killed ones' included.
      const groups = () =>
        readdirSync(join("/sys/fs/cgroup/pids", parent)).filter((name) => name.startsWith("sb-"));
      // Removal is asynchronous and slow on a loaded machine: a generous bound, not a speed check.
      for (let i = 0; i < 500 && groups().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(groups()).toEqual([]);
    }
  });
});

/** This suite's parent groups in the pids hierarchy. */
function warmParents(): string[] {
  return readdirSync("/sys/fs/cgroup/pids", { recursive: true })
    .map(String)
    .filter((p) => p.endsWith(`runcell-warm-test-${process.pid}`));
}

function warmGroups(parent: string): string[] {
  return readdirSync(join("/sys/fs/cgroup/pids", parent)).filter((name) => name.startsWith("warm-"));
}
