import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError, RuncellError } from "../errors.js";
import {
  CGROUP_JOIN_FAILED_EXIT,
  type DetectCgroupsOptions,
  detectCgroups,
  joinCgroupArgv,
} from "./cgroups.js";
import type { CgroupHandle, CgroupLimits, CgroupManager } from "./cgroups-types.js";

// Against the real cgroups of this host: groups are created under a parent unique to this test
// process, and everything created is removed after each test even when it fails.
const PARENT = `runcell-test-${process.pid}`;
const MiB = 1024 * 1024;
const PYTHON = "/usr/bin/python3";

const manager = await detectCgroups({ parentName: PARENT });
const { support } = manager;

/** Why a test cannot run here, as a suffix of its title ("" when it can). */
function lacking(controller: "memory" | "pids" | "cpu" | "freezer"): string {
  if (support[controller]) return "";
  return ` (skipped: no ${controller} cgroup on this host: ${support.notes.join("; ") || support.version})`;
}

// The hybrid layout's cgroup2 mount exercises the v2 code on a v1 host (cpu.stat, cgroup.kill).
const UNIFIED = "/sys/fs/cgroup/unified";
const unifiedManager = existsSync(join(UNIFIED, "cgroup.controllers"))
  ? await detectCgroups({ root: UNIFIED, parentName: PARENT })
  : null;
const unifiedLacking =
  unifiedManager?.support.version === "v2"
    ? ""
    : ` (skipped: no writable cgroup2 at ${UNIFIED}: ${unifiedManager?.support.notes.join("; ") ?? "not mounted"})`;

const handles: CgroupHandle[] = [];
const children: ChildProcess[] = [];
/** `<own cgroup>/<PARENT>` directories to remove at the end. */
const parents = new Set<string>();

async function create(m: CgroupManager, limits: CgroupLimits): Promise<CgroupHandle> {
  const handle = await m.create(`t-${Math.random().toString(36).slice(2, 10)}`, limits);
  handles.push(handle);
  for (const file of handle.procsFiles) parents.add(dirname(dirname(file)));
  return handle;
}

interface Started {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
}

/** Starts `python3 -c code` already inside the group (see joinCgroupArgv). */
function startIn(handle: CgroupHandle | string[], code: string): Started {
  const procsFiles = Array.isArray(handle) ? handle : handle.procsFiles;
  const argv = joinCgroupArgv(procsFiles, [PYTHON, "-c", code]);
  const child = spawn(argv[0]!, argv.slice(1), {
    env: { PATH: "/usr/bin:/bin" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", () => resolve({ code: 127, signal: null }));
  });
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** Resolves with the exit, or rejects when it does not come within `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Bounded polling of the OS until `check` holds; returns whether it did. */
async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return check();
}

function procsOf(handle: CgroupHandle): number[] {
  return handle.procsFiles.flatMap((file) => {
    try {
      return readFileSync(file, "utf8").split("\n").filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
}

/** Gone, or a zombie waiting for a parent that never reaps it: either way it holds nothing. */
function goneOrZombie(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z") ?? true;
  } catch {
    return true;
  }
}

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  const errors: unknown[] = [];
  for (const handle of handles.splice(0)) {
    try {
      await handle.dispose();
    } catch (error) {
      errors.push(error);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, "cgroup cleanup failed");
});

afterAll(() => {
  for (const parent of parents) {
    try {
      rmdirSync(parent);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
});

describe("detectCgroups on this host", () => {
  it("reports a version and consistent controllers, with a note for each one missing", () => {
    expect(["v1", "v2", "none"]).toContain(support.version);
    if (support.version === "none") {
      expect(support.notes.join(" ")).toMatch(/rlimit/i);
    }
    for (const controller of ["memory", "pids"] as const) {
      if (!support[controller]) expect(support.notes.join(" ")).toContain(controller);
    }
  });

  it.skipIf(support.version === "none")(
    `probes by creating and removing a group, leaving nothing behind${support.version === "none" ? " (skipped: no cgroups)" : ""}`,
    async () => {
      const handle = await create(manager, { memoryBytes: null, pids: null });
      const probeParent = `${PARENT}-probe`;
      const again = await detectCgroups({ parentName: probeParent });
      expect(again.support).toEqual(support);
      for (const file of handle.procsFiles) {
        const own = dirname(dirname(dirname(file)));
        expect(existsSync(join(own, probeParent))).toBe(false);
      }
    },
  );

  it("degrades to version none, with rlimit fallbacks in the notes, where there are no cgroups", async () => {
    const empty = mkdtempSync(join(tmpdir(), "runcell-nocgroup-"));
    try {
      const none = await detectCgroups({ root: empty });
      expect(none.support).toMatchObject({
        version: "none",
        memory: false,
        pids: false,
        cpu: false,
        freezer: false,
      });
      expect(none.support.notes.join(" ")).toMatch(/RLIMIT_AS/);
      await expect(none.create("x", { memoryBytes: null, pids: null })).rejects.toMatchObject({
        code: "CGROUPS_UNAVAILABLE",
      });
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it("rejects bad names and limits before touching the filesystem", async () => {
    const options: DetectCgroupsOptions = { parentName: "../escape" };
    await expect(detectCgroups(options)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(manager.create("../x", { memoryBytes: null, pids: null })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(manager.create("ok", { memoryBytes: -1, pids: null })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(manager.create("ok", { memoryBytes: null, pids: 1.5 })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });
});

describe("joinCgroupArgv", () => {
  it("runs nothing and exits 125 when a group cannot be joined", async () => {
    const run = startIn(["/nonexistent/cgroup.procs"], "print('ran')");
    const exit = await within(run.exited, 20_000, "exit");
    expect(exit.code).toBe(CGROUP_JOIN_FAILED_EXIT);
    expect(run.stdout()).toBe("");
    expect(run.stderr()).toContain("cannot join cgroup /nonexistent/cgroup.procs");
  });

  it("passes argv through untouched when there is no group", () => {
    expect(joinCgroupArgv([], ["/bin/true", "a b"])).toEqual(["/bin/true", "a b"]);
  });
});

describe("a run's cgroup", () => {
  it.skipIf(!support.memory)(
    `kills a process tree that allocates past memoryBytes and reports the OOM kill${lacking("memory")}`,
    async () => {
      const handle = await create(manager, { memoryBytes: 64 * MiB, pids: null });
      const run = startIn(handle, "x = bytearray(b'\\x01') * (200 * 1024 * 1024)\nprint('survived', len(x))");
      const exit = await within(run.exited, 30_000, "the OOM kill");
      expect(exit.signal).toBe("SIGKILL");
      expect(run.stdout()).not.toContain("survived");
      const stats = await handle.stats();
      expect(stats.oomKilled).toBe(true);
      expect(stats.peakMemoryBytes).toBeGreaterThan(0);
      expect(stats.peakMemoryBytes).toBeLessThanOrEqual(64 * MiB);
      expect(stats.pidsLimitHit).toBe(false);
    },
  );

  it.skipIf(!support.memory)(
    `lets a process within memoryBytes finish, with oomKilled false${lacking("memory")}`,
    async () => {
      const handle = await create(manager, { memoryBytes: 64 * MiB, pids: null });
      const run = startIn(handle, "x = bytearray(b'\\x01') * (8 * 1024 * 1024)\nprint('ok', len(x))");
      const exit = await within(run.exited, 30_000, "exit");
      expect(exit).toEqual({ code: 0, signal: null });
      expect(run.stdout()).toContain("ok 8388608");
      const stats = await handle.stats();
      expect(stats.oomKilled).toBe(false);
      expect(stats.peakMemoryBytes).toBeGreaterThanOrEqual(8 * MiB);
    },
  );

  it.skipIf(!support.pids)(
    `caps a fork loop at the pids limit and reports it${lacking("pids")}`,
    async () => {
      const handle = await create(manager, { memoryBytes: null, pids: 8 });
      const run = startIn(
        handle,
        [
          "import os, time",
          "kids, failed = [], 0",
          "for _ in range(50):",
          "    try:",
          "        pid = os.fork()",
          "    except OSError:",
          "        failed += 1",
          "        continue",
          "    if pid == 0:",
          "        time.sleep(60)",
          "        os._exit(0)",
          "    kids.append(pid)",
          "print(len(kids), failed, flush=True)",
          "for pid in kids:",
          "    os.kill(pid, 9)",
          "    os.waitpid(pid, 0)",
        ].join("\n"),
      );
      const exit = await within(run.exited, 30_000, "the fork loop");
      expect(exit).toEqual({ code: 0, signal: null });
      const [kids, failed] = run.stdout().trim().split(" ").map(Number);
      // The parent is one of the 8: at most 7 children, and the other forks failed.
      expect(kids! + 1).toBeLessThanOrEqual(8);
      expect(kids! + failed!).toBe(50);
      expect(failed).toBeGreaterThan(0);
      expect((await handle.stats()).pidsLimitHit).toBe(true);
    },
  );

  it.skipIf(!support.cpu)(`measures CPU time that grows for a busy loop${lacking("cpu")}`, async () => {
    const handle = await create(manager, { memoryBytes: null, pids: null });
    const run = startIn(handle, "import time\nwhile time.process_time() < 30: pass");
    const first = (await handle.stats()).cpuMs;
    expect(first).not.toBeNull();
    expect(await eventually(async () => ((await handle.stats()).cpuMs ?? 0) > first! + 100, 20_000)).toBe(
      true,
    );
    await handle.killAll();
    expect((await within(run.exited, 10_000, "exit after killAll")).signal).toBe("SIGKILL");
  });

  it.skipIf(!support.freezer)(
    `killAll kills a double-forked, setsid child that left the process group${lacking("freezer")}`,
    async () => {
      const handle = await create(manager, { memoryBytes: null, pids: null });
      const grandchild = await startDoubleFork(handle);
      expect(procsOf(handle)).toContain(grandchild);
      await handle.killAll();
      expect(await eventually(() => goneOrZombie(grandchild))).toBe(true);
      expect(procsOf(handle)).toEqual([]);
    },
  );

  it.skipIf(!support.freezer || !support.pids)(
    `killAll empties a group whose processes keep forking${lacking("freezer") || lacking("pids")}`,
    async () => {
      const handle = await create(manager, { memoryBytes: null, pids: 32 });
      startIn(
        handle,
        [
          "import os",
          "print('forking', flush=True)",
          "while True:",
          "    try:",
          "        os.fork()",
          "    except OSError:",
          "        pass",
        ].join("\n"),
      );
      // Until the bomb has run into the cap (a busy machine may take a while to get there).
      expect(await eventually(async () => (await handle.stats()).pidsLimitHit, 20_000)).toBe(true);
      expect(procsOf(handle).length).toBeGreaterThanOrEqual(16);
      await handle.killAll();
      expect(procsOf(handle)).toEqual([]);
      expect((await handle.stats()).pidsLimitHit).toBe(true);
    },
  );

  it.skipIf(support.version === "none")(
    `dispose kills what is left, removes every directory, keeps the last stats, and is idempotent${support.version === "none" ? " (skipped: no cgroups)" : ""}`,
    async () => {
      const handle = await create(manager, {
        memoryBytes: support.memory ? 64 * MiB : null,
        pids: support.pids ? 16 : null,
      });
      const dirs = handle.procsFiles.map((file) => dirname(file));
      for (const dir of dirs) expect(existsSync(dir)).toBe(true);
      const run = startIn(handle, "import time\nprint('up', flush=True)\ntime.sleep(60)");
      expect(await eventually(() => run.stdout().includes("up"), 20_000)).toBe(true);
      await handle.dispose();
      expect((await within(run.exited, 10_000, "exit after dispose")).signal).toBe("SIGKILL");
      for (const dir of dirs) expect(existsSync(dir)).toBe(false);
      await handle.dispose();
      await handle.killAll();
      const stats = await handle.stats();
      if (support.cpu) expect(stats.cpuMs).toBeGreaterThan(0);
      if (support.memory) expect(stats.peakMemoryBytes).toBeGreaterThan(0);
    },
  );

  it.skipIf(!support.memory || !support.pids || !support.cpu)(
    `recycle: a reused group measures the next tree from zero, and refuses while it has members${lacking("memory") || lacking("pids") || lacking("cpu")}`,
    async () => {
      const handle = await create(manager, { memoryBytes: 64 * MiB, pids: 8 });
      const hog = startIn(
        handle,
        [
          "import os, time",
          "x = bytearray(b'\\x01') * (200 * 1024 * 1024)", // past the limit: OOM-killed
        ].join("\n"),
      );
      expect((await within(hog.exited, 30_000, "the OOM kill")).signal).toBe("SIGKILL");
      const forks = startIn(
        handle,
        "import os\nfor _ in range(20):\n    try:\n        os.fork() or os._exit(0)\n    except OSError:\n        pass\nt = 0\nfor i in range(3_000_000): t += i",
      );
      await within(forks.exited, 30_000, "the fork loop");
      const before = await handle.stats();
      expect(before).toMatchObject({ oomKilled: true, pidsLimitHit: true });
      expect(before.peakMemoryBytes).toBeGreaterThan(32 * MiB);
      expect(before.cpuMs).toBeGreaterThan(50);

      const sleeper = startIn(handle, "import time\nprint('up', flush=True)\ntime.sleep(60)");
      expect(await eventually(() => sleeper.stdout().includes("up"), 20_000)).toBe(true);
      expect(await handle.recycle()).toBe(false); // a member is still there
      await handle.killAll();
      await within(sleeper.exited, 10_000, "exit after killAll");
      expect(await eventually(() => procsOf(handle).length === 0)).toBe(true);
      expect(await handle.recycle({ maxResidualBytes: 64 * MiB })).toBe(true);

      const quiet = startIn(handle, "print('small')");
      expect(await within(quiet.exited, 20_000, "a small run")).toEqual({ code: 0, signal: null });
      const after = await handle.stats();
      expect(after).toMatchObject({ oomKilled: false, pidsLimitHit: false });
      expect(after.peakMemoryBytes).toBeLessThan(32 * MiB);
      expect(after.cpuMs).toBeLessThan(before.cpuMs!);
      // The limits stay in force for the next tree.
      const again = startIn(handle, "x = bytearray(b'\\x01') * (200 * 1024 * 1024)");
      expect((await within(again.exited, 30_000, "the second OOM kill")).signal).toBe("SIGKILL");
      expect((await handle.stats()).oomKilled).toBe(true);
    },
  );

  it.skipIf(support.version === "none")(
    `adopt moves a running process into every hierarchy of the group${support.version === "none" ? " (skipped: no cgroups)" : ""}`,
    async () => {
      const handle = await create(manager, { memoryBytes: null, pids: null });
      const child = spawn(PYTHON, ["-c", "import time; time.sleep(60)"], { stdio: "ignore" });
      children.push(child);
      await handle.adopt(child.pid!);
      for (const file of handle.procsFiles) {
        expect(readFileSync(file, "utf8").split("\n").map(Number)).toContain(child.pid);
      }
      await expect(handle.adopt(0)).rejects.toBeInstanceOf(InvalidArgumentError);
      await handle.dispose();
    },
  );

  it.skipIf(support.version === "none")(
    `refuses an existing name${support.version === "none" ? " (skipped: no cgroups)" : ""}`,
    async () => {
      const handle = await create(manager, { memoryBytes: null, pids: null });
      const dir = dirname(handle.procsFiles[0]!).split("/").pop()!;
      // The directory is the name tagged with the owner's pid.
      expect(dir).toMatch(new RegExp(`\\.p${process.pid}$`));
      const name = dir.replace(/\.p\d+$/, "");
      await expect(manager.create(name, { memoryBytes: null, pids: null })).rejects.toMatchObject({
        code: "CGROUP_EXISTS",
      });
    },
  );

  it.skipIf(support.version === "none")(
    `sweep removes the groups of dead owners, killing what still runs in them, and nothing else${support.version === "none" ? " (skipped: no cgroups)" : ""}`,
    async () => {
      const mine = await create(manager, { memoryBytes: null, pids: null });
      const groupParents = mine.procsFiles.map((file) => dirname(dirname(file)));
      // A pid that was alive a moment ago and is not any more.
      const gone = spawn(PYTHON, ["-c", "pass"], { stdio: "ignore" });
      await new Promise((resolve) => gone.once("exit", resolve));
      const dead = gone.pid!;
      const made = (name: string) => groupParents.map((parent) => join(parent, name));
      const stale = made(`sb-stale.p${dead}`);
      // What a sandbox caught mid-launch by its runcell's death leaves: a live process.
      const orphaned = made(`sb-orphaned.p${dead}`);
      // A live owner's group, busy: another runcell's run under way.
      const others = made(`sb-others.p${process.ppid}`);
      const untagged = made("not-runcells");
      for (const dir of [...stale, ...orphaned, ...others, ...untagged]) mkdirSync(dir);
      const sleep = () => {
        const child = spawn(PYTHON, ["-c", "import time; time.sleep(60)"], { stdio: "ignore" });
        children.push(child);
        return child;
      };
      const [left, running] = [sleep(), sleep()];
      const leftExit = new Promise<NodeJS.Signals | null>((resolve) =>
        left.once("exit", (_, signal) => resolve(signal)),
      );
      for (const dir of orphaned) writeFileSync(join(dir, "cgroup.procs"), String(left.pid));
      for (const dir of others) writeFileSync(join(dir, "cgroup.procs"), String(running.pid));
      try {
        expect(await manager.sweep()).toBe(stale.length + orphaned.length);
        expect(await leftExit).toBe("SIGKILL");
        for (const dir of [...stale, ...orphaned]) expect(existsSync(dir), dir).toBe(false);
        for (const dir of [...others, ...untagged]) expect(existsSync(dir), dir).toBe(true);
        expect(running.exitCode).toBeNull();
        expect(running.signalCode).toBeNull();
        for (const file of mine.procsFiles) expect(existsSync(file)).toBe(true);
      } finally {
        running.kill("SIGKILL");
        await new Promise((resolve) =>
          running.exitCode === null ? running.once("exit", resolve) : resolve(null),
        );
        for (const dir of [...others, ...untagged]) {
          await eventually(() => {
            try {
              rmdirSync(dir);
              return true;
            } catch {
              return false;
            }
          });
        }
      }
    },
  );
});

describe("cgroup v2 (the hybrid layout's unified hierarchy)", () => {
  it.skipIf(unifiedLacking !== "")(
    `measures CPU, kills a setsid grandchild with cgroup.kill, and removes the group${unifiedLacking}`,
    async () => {
      const v2 = unifiedManager!;
      expect(v2.support.cpu).toBe(true);
      if (!v2.support.memory) {
        await expect(v2.create("no-memory", { memoryBytes: 64 * MiB, pids: null })).rejects.toBeInstanceOf(
          RuncellError,
        );
      }
      const handle = await create(v2, { memoryBytes: null, pids: null });
      expect(handle.procsFiles).toHaveLength(1);
      const grandchild = await startDoubleFork(handle, "while True: pass");
      expect(await eventually(async () => ((await handle.stats()).cpuMs ?? 0) > 50, 20_000)).toBe(true);
      await handle.killAll();
      expect(await eventually(() => goneOrZombie(grandchild))).toBe(true);
      const dir = dirname(handle.procsFiles[0]!);
      await handle.dispose();
      expect(existsSync(dir)).toBe(false);
    },
  );
});

/**
 * Starts a process in the group that forks, calls setsid and forks again, then exits: the
 * grandchild is in its own session and process group, reparented away from us, and only the
 * cgroup still knows it. It then runs `body` (one line of Python). Returns the grandchild's pid.
 */
async function startDoubleFork(handle: CgroupHandle, body = "time.sleep(60)"): Promise<number> {
  const run = startIn(
    handle,
    [
      "import os, time",
      "if os.fork() == 0:",
      "    os.setsid()",
      "    if os.fork() == 0:",
      "        print(os.getpid(), flush=True)",
      "        fd = os.open('/dev/null', os.O_RDWR)",
      "        os.dup2(fd, 1)",
      "        os.dup2(fd, 2)",
      `        ${body}`,
      "        os._exit(0)",
      "    os._exit(0)",
      "os.wait()",
    ].join("\n"),
  );
  const exit = await within(run.exited, 20_000, "the double fork");
  expect(exit).toEqual({ code: 0, signal: null });
  // The grandchild prints on its own schedule: wait (bounded) for its line.
  expect(await eventually(() => run.stdout().includes("\n"), 20_000)).toBe(true);
  const pid = Number(run.stdout().trim());
  expect(Number.isInteger(pid) && pid > 1).toBe(true);
  expect(goneOrZombie(pid)).toBe(false);
  return pid;
}
