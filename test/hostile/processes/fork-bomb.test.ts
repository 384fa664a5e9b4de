/**
 * Attacks: the process table. The classic fork bomb `while True: try: os.fork() except: pass`
 * (HOSTILE.md #11, anchor: Piston `tests/fork.py`).
 *
 * Expected: the pids cgroup holds the tree at 64 tasks (sampled from pids.current while it
 * runs); the bomb never ends by itself, so the wall timer ends it: `timed_out`, `limit: time`;
 * every process is gone afterwards (the harness checks no process of the run's host uid
 * survives, and its cgroup is removed); the next job runs normally.
 *
 * Deterministic: fork fails with EAGAIN once the cap is reached and the bomb keeps retrying,
 * so the tree sits at the cap until the wall limit; nothing else can end it.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap", "pids", "root");

describe("fork bomb", () => {
  it.skipIf(c.skip)(
    `#11 the pids cap holds, the run ends, nothing survives${c.label}`,
    async ({ expect }) => {
      const code = "import os\nwhile True:\n    try:\n        os.fork()\n    except:\n        pass";
      const { execution: e, tracked } = await h.run(
        { language: "python", code, limits: { timeMs: 2_000 } },
        { samplePids: true },
      );
      expect(e.status, describeRun(e)).toBe("timed_out");
      expect(e.limit).toBe("time");
      expect(e.error?.category).toBe("timeout");
      expect(e.limits.pids).toBe(SUITE_LIMITS.pids);
      expect(tracked.peakPids).not.toBeNull();
      expect(tracked.peakPids!).toBeLessThanOrEqual(SUITE_LIMITS.pids);
      // The bomb did reach the cap (it is the cap, not something lower, that held it).
      expect(tracked.peakPids!).toBeGreaterThan(SUITE_LIMITS.pids / 2);
      expect(h.survivors().filter((p) => tracked.uids.includes(p.uid) && p.state !== "Z")).toEqual([]);

      const { execution: next } = await h.run({ language: "bash", code: "echo usable" });
      expect(next.status, describeRun(next)).toBe("completed");
      h.report("11-fork-bomb", e, { peak_pids: tracked.peakPids });
    },
  );
});
