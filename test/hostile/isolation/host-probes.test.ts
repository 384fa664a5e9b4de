/**
 * Checks the suite's own instruments, so that "nothing survived" means something: the
 * harness's leftover probes must see a process running as a sandbox uid, and must see a
 * run's cgroup while it exists (HOSTILE.md §2: "every case also records host probes").
 *
 * Expected: a `sleep` started on the host as one of the harness's pool uids is reported by
 * survivors() until killed; a running sandbox's cgroup directories exist while it runs and
 * are gone after; its processes are in them.
 *
 * Deterministic: the test owns the processes it looks for and waits for READY before probing.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "vitest";
import { pollUntil } from "../../support/processes.js";
import { describeRun, needs, probeHost, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const root = needs(host, "root");
const cg = needs(host, "bwrap", "pids");

describe("harness probes", () => {
  it.skipIf(root.skip)(
    `a process running as a pool uid is reported as a survivor${root.label}`,
    async ({ expect }) => {
      const uid = h.uidRange.first + h.uidRange.size - 1;
      const sleeper = spawn("/bin/sleep", ["30"], { uid, gid: uid, stdio: "ignore" });
      try {
        expect(
          await pollUntil(() => h.survivors().some((p) => p.pid === sleeper.pid && p.uid === uid), 5_000),
        ).toBe(true);
      } finally {
        sleeper.kill("SIGKILL");
      }
      await new Promise((resolve) => sleeper.once("exit", resolve));
      expect(await pollUntil(() => !h.survivors().some((p) => p.pid === sleeper.pid), 5_000)).toBe(true);
    },
  );

  it.skipIf(cg.skip)(
    `a run's cgroup holds its processes while it runs and is removed after${cg.label}`,
    async ({ expect }) => {
      const abort = new AbortController();
      let ready!: () => void;
      const isReady = new Promise<void>((resolve) => (ready = resolve));
      const live = h.start({
        language: "bash",
        code: "echo READY; sleep 30",
        signal: abort.signal,
        onStdout: (text) => text.includes("READY") && ready(),
      });
      await Promise.race([isReady, live.done]);
      const dirs = [...live.tracked.cgroupDirs];
      expect(dirs.length).toBeGreaterThan(0);
      expect(dirs.every((dir) => existsSync(dir))).toBe(true);
      const members = readFileSync(join(dirs[0]!, "cgroup.procs"), "utf8").split("\n").filter(Boolean);
      expect(members.length).toBeGreaterThanOrEqual(3);
      abort.abort();
      const { execution: e } = await live.done;
      expect(e.status, describeRun(e)).toBe("cancelled");
      expect(dirs.some((dir) => existsSync(dir))).toBe(false);
    },
  );
});
