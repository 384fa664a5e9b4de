/**
 * Attacks: wall time without CPU. `time.sleep(10**6)` never trips a CPU limit
 * (HOSTILE.md #2, anchor: isolate `-w`), and a 2 s limit must win over a much longer sleep
 * (#6, anchor: E2B `python/tests/test_execute_timeout.py`).
 *
 * Expected: `timed_out`, `limit: time`, category `timeout`, SIGKILL (137) from runcell's wall
 * timer; cpu_ms far below the CPU limit, which shows the wall timer fired, not the rlimit.
 *
 * Deterministic: a sleeping process uses almost no CPU, so only the wall timer can end it.
 */
import { describe, it } from "vitest";
import { execExitCode } from "../../../src/cli/commands/exec.js";
import { describeRun, needs, probeHost, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");
const cpu = needs(host, "bwrap", "cpu");

describe.concurrent("sleeping past the wall limit", () => {
  it.skipIf(c.skip)(`#2 time.sleep(10**6) is ended by the wall timer${c.label}`, async ({ expect }) => {
    const { execution: e } = await h.run({
      language: "python",
      code: "import time; time.sleep(10**6)",
      limits: { timeMs: 2_000 },
    });
    expect(e.status, describeRun(e)).toBe("timed_out");
    expect(e.limit).toBe("time");
    expect(e.error?.category).toBe("timeout");
    expect(e.error?.value).toMatch(/2000 ms time limit/);
    expect(e.exit_code).toBe(137);
    expect(e.signal).toBe("SIGKILL");
    expect(execExitCode(e)).toBe(124);
    h.report("2-sleep", e);
  });

  it.skipIf(cpu.skip)(`#2 the sleeping run used almost no CPU (cpu_ms) ${cpu.label}`, async ({ expect }) => {
    const { execution: e } = await h.run({
      language: "python",
      code: "import time; time.sleep(10**6)",
      limits: { timeMs: 2_000 },
    });
    expect(e.status, describeRun(e)).toBe("timed_out");
    expect(e.cpu_ms).not.toBeNull();
    // Interpreter start-up only: nowhere near the CPU limit, so the rlimit did not end it.
    expect(e.cpu_ms!).toBeLessThan(SUITE_LIMITS.cpuMs / 2);
    h.report("2-sleep-cpu", e);
  });

  it.skipIf(c.skip)(`#6 a 2 s limit wins over a 30 s sleep in bash${c.label}`, async ({ expect }) => {
    const { execution: e } = await h.run({ language: "bash", code: "sleep 30", limits: { timeMs: 2_000 } });
    expect(e.status, describeRun(e)).toBe("timed_out");
    expect(e.limit).toBe("time");
    expect(e.exit_code).toBe(137);
    h.report("6-bash-sleep", e);
  });
});
