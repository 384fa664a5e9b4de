/**
 * Attacks: the process table through threads. `threading.Thread(target=time.sleep,
 * args=(99,))` started forever (HOSTILE.md #12, anchor: isolate `-p` "processes and/or
 * threads").
 *
 * Expected: threads count against the same cap as processes (pids cgroup, 64): thread
 * creation fails with EAGAIN, Python raises `RuntimeError: can't start new thread`, and the
 * record says why: `failed`, `limit: pids`, category `runtime`. The code prints how many
 * threads it got, which stays below the cap.
 *
 * Deterministic: the sleeping threads never exit, so the count only grows until refused.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap", "pids");

describe("threads forever", () => {
  it.skipIf(c.skip)(
    `#12 threads are capped with the processes: RuntimeError, limit pids${c.label}`,
    async ({ expect }) => {
      const code = [
        "import threading, time",
        "n = 0",
        "try:",
        "    while True:",
        "        threading.Thread(target=time.sleep, args=(99,), daemon=True).start()",
        "        n += 1",
        "finally:",
        "    print(f'THREADS={n}', flush=True)",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("failed");
      expect(e.error?.name).toBe("RuntimeError");
      expect(e.error?.value).toMatch(/can't start new thread/);
      expect(e.error?.category).toBe("runtime");
      expect(e.limit).toBe("pids");
      const threads = probeResults(e).THREADS as number;
      expect(threads).toBeLessThan(SUITE_LIMITS.pids);
      expect(threads).toBeGreaterThan(SUITE_LIMITS.pids / 2);
      h.report("12-threads", e, { threads });
    },
  );
});
