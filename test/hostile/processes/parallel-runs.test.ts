/**
 * Attacks: the engine's own bookkeeping. 20 one-shot runs started at once and all ending at
 * the same instant (HOSTILE.md #58, anchor: Piston `tests/multi_request.py`).
 *
 * Expected: all 20 complete; each record holds only its own output; each ran as its own host
 * uid with its own cgroup; cleanup races are harmless (the harness checks every run's
 * processes, run directory and cgroup are gone, and the runner's fd count is back).
 *
 * Deterministic: every run sleeps until the same absolute time (the sandboxes share the host
 * clock), so they end together however long their starts took.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

describe("parallel runs", () => {
  it.skipIf(c.skip)(`#58 20 parallel runs ending together all succeed${c.label}`, async ({ expect }) => {
    const endAt = Date.now() / 1000 + 2.5;
    const runs = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        h.run({
          language: "python",
          code: `import time\ntime.sleep(max(0, ${endAt} - time.time()))\nprint('run ${i}')`,
        }),
      ),
    );
    runs.forEach(({ execution: e }, i) => {
      expect(e.status, describeRun(e)).toBe("completed");
      expect(e.stdout).toBe(`run ${i}\n`);
    });
    expect(new Set(runs.map((r) => r.execution.id)).size).toBe(20);
    if (host.root) expect(new Set(runs.flatMap((r) => r.tracked.uids)).size).toBe(20);
    if (host.cgroups)
      expect(new Set(runs.flatMap((r) => r.tracked.cgroupDirs)).size).toBeGreaterThanOrEqual(20);
    for (const { execution } of runs) h.report("58-parallel", execution);
  });
});
