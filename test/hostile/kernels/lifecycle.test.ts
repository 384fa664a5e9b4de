/**
 * Attacks: resources a sandboxed kernel could leave on the host (HOSTILE.md #50, anchor:
 * jupyter_server `test_cull_dead`; and the kernel part of #57, anchor: nsjail
 * `PR_SET_PDEATHSIG`, bwrap `--die-with-parent`). Each case starts its own kernel:
 *   - an idle kernel disposed (by `shutdown_request`, escalating if needed): no process of the
 *     harness's pooled uid range, none whose command line names the kernel's connection file,
 *     no connection file or socket dir, no cgroup directory;
 *   - a kernel that dies while idle (its python SIGKILLed from the host) is marked dead with
 *     the signal, refuses executions at once, and its dispose frees the same resources;
 *   - an owner process SIGKILLed with a live kernel (a node child started with
 *     `node --import tsx owner-child.ts`): the kernel and every process of its pooled uid die
 *     with it. Its cgroup directories outlive it (nothing is left to remove them), empty; the
 *     case checks they hold no process and removes them.
 *
 * Deterministic: every wait is for an event (status change, READY line, child exit) or a
 * bounded poll of /proc for processes the kernel's own kill chain is already ending.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { rmdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "vitest";
import { isProcessAlive, pollUntil, processesMatching, processesOwnedBy } from "../../support/processes.js";
import { awaitingInit, probeHost, REPO_ROOT } from "../harness.js";
import {
  CGROUP_PARENT,
  CHILD_UIDS,
  describeExecution,
  GONE_WAIT_MS,
  groupMembers,
  kernelNeeds,
  procStatusField,
  SANDBOXED_KERNEL_ENV,
  type SandboxedKernel,
  useKernelHarness,
  waitForStatus,
} from "./kernel-harness.js";

const host = await probeHost();
const h = useKernelHarness(host);
const c = await kernelNeeds(host);
const rooted = await kernelNeeds(host, "root");

/** What a kernel holds on the host, taken while it is alive. */
interface Footprint {
  pid: number;
  connectionFile: string;
  socketDir: string;
  cgroupDirs: string[];
}

function footprint(k: SandboxedKernel): Footprint {
  const connectionFile = k.kernel.connectionFile!;
  return {
    pid: k.kernel.pid!,
    connectionFile,
    socketDir: dirname(connectionFile),
    cgroupDirs: k.spawns.flat(),
  };
}

const inPool = (uid: number) => uid >= h.uidRange.first && uid < h.uidRange.first + h.uidRange.size;
const poolLeft = () => processesOwnedBy(inPool).filter((p) => !awaitingInit(p));

describe("sandboxed kernel teardown", () => {
  it.skipIf(c.skip)(
    `#50 a disposed kernel leaves no process, connection file or cgroup${c.label}`,
    async ({ expect }) => {
      const k = await h.start();
      const before = footprint(k);
      // The probes see the live kernel, so seeing nothing afterwards means something.
      expect(processesMatching(before.connectionFile).length).toBeGreaterThan(0);
      expect(existsSync(before.connectionFile)).toBe(true);
      for (const dir of before.cgroupDirs) expect(existsSync(dir), dir).toBe(true);
      if (!rooted.skip) expect(k.processes().length).toBeGreaterThan(0);

      // Normally shutdown_request; SIGTERM when a loaded host slows the kernel's own shutdown
      // past the step deadline. Either way runcell ended a live kernel.
      const path = await k.dispose();
      expect(["shutdown_request", "sigterm", "sigkill"]).toContain(path);
      expect(k.kernel.status).toBe("dead");
      expect(await pollUntil(() => poolLeft().length === 0, GONE_WAIT_MS), JSON.stringify(poolLeft())).toBe(
        true,
      );
      expect(processesMatching(before.connectionFile)).toEqual([]);
      expect(isProcessAlive(before.pid)).toBe(false);
      expect(existsSync(before.connectionFile)).toBe(false);
      expect(existsSync(before.socketDir)).toBe(false);
      for (const dir of before.cgroupDirs) expect(existsSync(dir), dir).toBe(false);
      h.report("50-kernel-dispose", null, { shutdown_path: path, cgroup_dirs: before.cgroupDirs.length });
    },
  );

  it.skipIf(c.skip)(
    `#50 a kernel killed while idle is marked dead; dispose frees everything${c.label}`,
    async ({ expect }) => {
      const k = await h.start();
      const before = footprint(k);
      // The kernel itself, as the host sees it: the python process running the launcher.
      const python = processesMatching(before.connectionFile).filter((pid) =>
        procStatusField(pid, "Name")?.startsWith("python"),
      );
      expect(python).toHaveLength(1);
      const dead = waitForStatus(k.kernel, "dead", 10_000);
      process.kill(python[0]!, "SIGKILL");
      await dead;
      expect(k.kernel.death).toMatchObject({ reason: "exited", exit_code: 137, signal: "SIGKILL" });
      const refused = await k.executor.execute("1", { timeoutMs: 10_000 });
      expect(refused.status, describeExecution(refused)).toBe("failed");
      expect(refused.error?.category).toBe("kernel_died");
      expect(refused.error?.value).toMatch(
        /^the kernel was killed by SIGKILL; the kernel is dead; restart it first/,
      );
      expect(refused.started_at).toBeNull();

      const path = await k.dispose();
      expect(path).toBe("already_dead");
      expect(await pollUntil(() => poolLeft().length === 0, GONE_WAIT_MS), JSON.stringify(poolLeft())).toBe(
        true,
      );
      expect(processesMatching(before.connectionFile)).toEqual([]);
      expect(existsSync(before.socketDir)).toBe(false);
      for (const dir of before.cgroupDirs) expect(existsSync(dir), dir).toBe(false);
      h.report("50-kernel-dead-while-idle", refused, {
        exit_code: k.kernel.death?.exit_code,
        signal: k.kernel.death?.signal,
      });
    },
  );

  it.skipIf(rooted.skip)(
    `#57 a SIGKILLed owner leaves no sandboxed kernel behind${rooted.label}`,
    async ({ expect }) => {
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          fileURLToPath(new URL("./owner-child.ts", import.meta.url)),
          join(h.runtimeDir, "owner"),
          CGROUP_PARENT,
          String(h.uidRange.first + h.uidRange.size - CHILD_UIDS),
          String(CHILD_UIDS),
          JSON.stringify(SANDBOXED_KERNEL_ENV),
        ],
        { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] },
      );
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      let stderr = "";
      child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk));
      let info: { pid: number; hostUid: number; connectionFile: string; cgroupDirs: string[] };
      try {
        info = await new Promise((resolve, reject) => {
          let out = "";
          const timer = setTimeout(
            () => reject(new Error(`no READY line within 30 s; stderr: ${stderr}`)),
            30_000,
          );
          child.stdout!.on("data", (chunk: Buffer) => {
            out += chunk;
            const line = /^READY (.*)$/m.exec(out)?.[1];
            if (line === undefined) return;
            clearTimeout(timer);
            resolve(JSON.parse(line));
          });
          void exited.then(() => {
            clearTimeout(timer);
            reject(new Error(`the owner exited before READY; stderr: ${stderr}`));
          });
        });
      } catch (error) {
        child.kill("SIGKILL");
        await exited;
        throw error;
      }
      const ofKernel = () => processesOwnedBy((uid) => uid === info.hostUid).filter((p) => !awaitingInit(p));
      try {
        expect(isProcessAlive(info.pid)).toBe(true);
        expect(ofKernel().length).toBeGreaterThan(0);
        expect(processesMatching(info.connectionFile).length).toBeGreaterThan(0);

        child.kill("SIGKILL");
        await exited;
        const gone = await pollUntil(() => !isProcessAlive(info.pid) && ofKernel().length === 0, 10_000);
        expect(gone, JSON.stringify(ofKernel())).toBe(true);
        expect(processesMatching(info.connectionFile)).toEqual([]);

        // Nobody is left to remove the kernel's cgroups: they stay, but hold nothing.
        const leftDirs = info.cgroupDirs.filter((dir) => existsSync(dir));
        for (const dir of leftDirs) expect(groupMembers([dir]), dir).toEqual([]);
        h.report("57-kernel-owner-sigkilled", null, { kernel_gone: gone, cgroup_dirs_left: leftDirs.length });
      } finally {
        child.kill("SIGKILL");
        for (const dir of info.cgroupDirs) await rmdir(dir).catch(() => undefined);
      }
    },
  );
});
