/**
 * Attacks: the life of a sandboxed kernel. Cases, on one shared kernel leased with the suite's
 * 256 MiB memory limit and 64 pids, in order; each leaves the kernel restarted and usable:
 *   #38 `os._exit(1)` mid-cell (anchor: vscode-jupyter `cellExecution.ts`, E2B
 *       `ContextRestarting`): `failed`, category `kernel_died`, "exited with code 1"; the kernel
 *       is dead (its process reaped, further executions refused at once); restart() brings it
 *       back inside the sandbox (uid 1000 and pid 2 inside, the pooled uid outside), state lost.
 *   #39 `os.kill(os.getpid(), 9)` (anchor: vscode-jupyter `KernelProcessExitedError`): the same,
 *       with the signal — bubblewrap reports it as exit code 137, and the record says SIGKILL.
 *   #7  `x.append(bytearray(10**7))` forever in the kernel (anchor: isolate `cg-oom-killed`):
 *       the kernel's memory cgroup OOM-kills it (oom_kill counted in the group on the host);
 *       the execution ends `failed`, `limit: memory`, `kernel_died`, "killed by SIGKILL on
 *       reaching its memory limit"; nothing hangs; restart() gives a working kernel.
 *   #11 the fork bomb in a cell under a 2 s time limit (anchor: Piston `tests/fork.py`): the
 *       pids cgroup holds the tree at the cap (sampled on the host), the bomb swallows the
 *       interrupt, so the execution ends `timed_out` with the kernel restarted; the old tree
 *       and its cgroup are gone and the new kernel is usable.
 *
 * Deterministic: each fault is unconditional (exit, SIGKILL, unbounded allocation, unbounded
 * forking that catches everything); every execution has a backstop time limit far beyond what
 * the fault needs, so a hang shows as the wrong status, never as a slow pass.
 */
import { existsSync } from "node:fs";
import { describe, type ExpectStatic, it } from "vitest";
import { isProcessAlive } from "../../support/processes.js";
import { probeHost, SUITE_LIMITS } from "../harness.js";
import {
  describeExecution,
  groupMembers,
  kernelNeeds,
  oomKills,
  pidsCurrent,
  procStatusField,
  resultText,
  type SandboxedKernel,
  useKernelHarness,
} from "./kernel-harness.js";

const host = await probeHost();
const h = useKernelHarness(host);
const c = await kernelNeeds(host);
const rooted = await kernelNeeds(host, "root");
const mem = await kernelNeeds(host, "memory");
const pids = await kernelNeeds(host, "pids");

const BACKSTOP_MS = 20_000;

let shared: SandboxedKernel | undefined;
async function sharedKernel(): Promise<SandboxedKernel> {
  shared ??= await h.start({
    limits: { memoryBytes: SUITE_LIMITS.memoryBytes, pids: SUITE_LIMITS.pids },
    interruptGraceMs: 1_000,
  });
  // A case that failed half-way may have left it dead: the next one starts from a live kernel.
  if (shared.kernel.status === "dead") await shared.kernel.restart();
  return shared;
}

/** Sets a variable, so a case can show the state was lost. */
async function plant(k: SandboxedKernel, name: string): Promise<void> {
  const e = await k.executor.execute(`${name} = 1`, { timeoutMs: BACKSTOP_MS });
  if (e.status !== "completed") throw new Error(`setting ${name} failed: ${describeExecution(e)}`);
}

/** After a restart: a fresh kernel, confined as before, without the planted variable. */
async function expectFreshInSandbox(
  expect: ExpectStatic,
  k: SandboxedKernel,
  planted: string,
  oldPid: number,
): Promise<void> {
  // Waits for a restart still in progress (the executor resumes once the kernel is idle).
  const e = await k.executor.execute(
    `import os; ('${planted}' in globals(), os.getuid(), os.getpid(), 6 * 7)`,
    { timeoutMs: BACKSTOP_MS },
  );
  expect(e.status, describeExecution(e)).toBe("completed");
  // State lost; uid 1000 and pid 2 (under the sandbox's init) inside its own pid namespace.
  expect(resultText(e)).toBe("(False, 1000, 2, 42)");
  expect(e.execution_count).toBe(1);
  expect(k.kernel.status).toBe("idle");
  expect(k.kernel.death).toBeUndefined();
  expect(k.kernel.pid).not.toBe(oldPid);
  expect(isProcessAlive(oldPid)).toBe(false);
  if (!rooted.skip) {
    // Outside: the pooled uid, and every process of that uid is in the new process's cgroup.
    expect(procStatusField(k.kernel.pid!, "Uid")?.split(/\s+/)[0]).toBe(String(k.hostUid));
    const members = groupMembers(k.spawns.at(-1) ?? []);
    if (members !== null) {
      expect(members).toContain(k.kernel.pid);
      expect(k.processes().filter((p) => !members.includes(p.pid))).toEqual([]);
    }
  }
}

describe("sandboxed kernel death", () => {
  it.skipIf(c.skip)(
    `#38 os._exit(1): failed/kernel_died, kernel dead, restart() brings it back confined${c.label}`,
    async ({ expect }) => {
      const k = await sharedKernel();
      await plant(k, "lost");
      const oldPid = k.kernel.pid!;
      const e = await k.executor.execute("import os; os._exit(1)", { timeoutMs: BACKSTOP_MS });
      expect(e.status, describeExecution(e)).toBe("failed");
      expect(e.limit).toBeNull();
      expect(e.error?.category).toBe("kernel_died");
      expect(e.error?.name).toBe("KernelDied");
      expect(e.error?.value).toMatch(/^the kernel exited with code 1; it died while this execution ran/);
      expect(k.kernel.status).toBe("dead");
      expect(k.kernel.death).toMatchObject({ reason: "exited", exit_code: 1, signal: null });
      const death = { exit_code: k.kernel.death?.exit_code, signal: k.kernel.death?.signal };
      expect(isProcessAlive(oldPid)).toBe(false);

      // While dead, executions fail at once instead of waiting.
      const refused = await k.executor.execute("1", { timeoutMs: BACKSTOP_MS });
      expect(refused.status).toBe("failed");
      expect(refused.error?.category).toBe("kernel_died");
      expect(refused.started_at).toBeNull();

      await k.kernel.restart();
      await expectFreshInSandbox(expect, k, "lost", oldPid);
      h.report("38-kernel-os-exit", e, death);
    },
  );

  it.skipIf(c.skip)(
    `#39 os.kill(os.getpid(), 9): kernel_died naming SIGKILL${c.label}`,
    async ({ expect }) => {
      const k = await sharedKernel();
      await plant(k, "lost");
      const oldPid = k.kernel.pid!;
      const e = await k.executor.execute("import os; os.kill(os.getpid(), 9)", { timeoutMs: BACKSTOP_MS });
      expect(e.status, describeExecution(e)).toBe("failed");
      expect(e.error?.category).toBe("kernel_died");
      expect(e.error?.value).toMatch(/^the kernel was killed by SIGKILL; it died while this execution ran/);
      // bubblewrap's pid 1 exits with 128 + the signal; the death record decodes it.
      expect(k.kernel.death).toMatchObject({ reason: "exited", exit_code: 137, signal: "SIGKILL" });
      const death = { exit_code: k.kernel.death?.exit_code, signal: k.kernel.death?.signal };
      expect(k.kernel.status).toBe("dead");
      expect(isProcessAlive(oldPid)).toBe(false);

      await k.kernel.restart();
      await expectFreshInSandbox(expect, k, "lost", oldPid);
      h.report("39-kernel-sigkill", e, death);
    },
  );

  it.skipIf(mem.skip)(
    `#7 a memory bomb in the kernel is OOM-killed in its cgroup: kernel_died, limit memory${mem.label}`,
    async ({ expect }) => {
      const k = await sharedKernel();
      await plant(k, "lost");
      const oldPid = k.kernel.pid!;
      const rssBefore = process.memoryUsage().rss;
      const e = await k.executor.execute("x = []\nwhile True: x.append(bytearray(10**7))", {
        timeoutMs: BACKSTOP_MS,
      });
      expect(e.status, describeExecution(e)).toBe("failed");
      expect(e.error?.category).toBe("kernel_died");
      expect(e.error?.name).toBe("KernelDied");
      expect(e.error?.value).toMatch(
        /^the kernel was killed by SIGKILL on reaching its memory limit; it died while this execution ran/,
      );
      expect(e.error?.value).toMatch(/The kernel's state is lost\.$/);
      // The sandbox's cgroup names the limit that killed it.
      expect(e.limit).toBe("memory");
      expect(k.kernel.status).toBe("dead");
      expect(k.kernel.death).toMatchObject({
        reason: "exited",
        exit_code: 137,
        signal: "SIGKILL",
        limit: "memory",
      });
      expect(isProcessAlive(oldPid)).toBe(false);
      // It was the memory cgroup's OOM killer (the group stays until the restart removes it).
      const current = k.spawns.at(-1) ?? [];
      const kills = oomKills(current);
      expect(kills).not.toBeNull();
      expect(kills!).toBeGreaterThanOrEqual(1);

      await k.kernel.restart();
      for (const dir of current) expect(existsSync(dir), dir).toBe(false);
      await expectFreshInSandbox(expect, k, "lost", oldPid);
      h.report("7-kernel-memory-bomb", e, {
        oom_kills: kills,
        runner_rss_delta: process.memoryUsage().rss - rssBefore,
      });
    },
  );

  it.skipIf(pids.skip)(
    `#11 a fork bomb in a cell: pids cap holds, timed_out with a restart, kernel usable${pids.label}`,
    async ({ expect }) => {
      const k = await sharedKernel();
      await plant(k, "lost");
      const oldPid = k.kernel.pid!;
      const bombGroup = k.spawns.at(-1) ?? [];
      let peak = 0;
      const sampler = setInterval(() => {
        peak = Math.max(peak, pidsCurrent(bombGroup) ?? 0);
      }, 20);
      const code = "import os\nwhile True:\n    try:\n        os.fork()\n    except:\n        pass";
      let e;
      try {
        e = await k.executor.execute(code, { timeoutMs: 2_000 });
      } finally {
        clearInterval(sampler);
      }
      expect(e.status, describeExecution(e)).toBe("timed_out");
      expect(e.limit).toBe("time");
      expect(e.error?.category).toBe("timeout");
      // The bomb catches KeyboardInterrupt like everything else: only the restart ends it.
      expect(e.error?.value).toMatch(/ignored the interrupt; the kernel was restarted and its state lost/);
      expect(peak).toBeLessThanOrEqual(SUITE_LIMITS.pids);
      // The cap, not something lower, is what held the tree.
      expect(peak).toBeGreaterThan(SUITE_LIMITS.pids / 2);

      await expectFreshInSandbox(expect, k, "lost", oldPid);
      for (const dir of bombGroup) expect(existsSync(dir), dir).toBe(false);
      h.report("11-kernel-fork-bomb", e, { peak_pids: peak });
    },
  );
});
