/**
 * Attacks: the other interpreters. The time and output cases of HOSTILE.md #1/#2 (Piston
 * `run_cpu_time`, isolate `-t`/`-w`) and #15 (Piston `tests/runaway_output.py`) in bash and
 * node, plus a basic run of each to show they work confined at all.
 *
 * Expected: bash and node run as uid 1000 in the sandbox and complete; `while :; do :; done`
 * and `for (;;) {}` are ended as `timed_out`/`limit: time`; `yes` in bash is stopped at the
 * 1 MiB output cap with `limit: output` and `truncated`.
 *
 * Deterministic: the loops never end by themselves (wall 2 s, CPU 2 s: either kill gives the
 * same record); `yes` never stops writing.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

describe.concurrent("bash and node", () => {
  it.skipIf(c.skip)(`bash: a basic run completes as uid 1000 in /workspace${c.label}`, async ({ expect }) => {
    const { execution: e } = await h.run({ language: "bash", code: 'echo "hello $(id -u) $PWD"' });
    expect(e.status, describeRun(e)).toBe("completed");
    expect(e.stdout).toBe("hello 1000 /workspace\n");
    expect(e.exit_code).toBe(0);
  });

  it.skipIf(c.skip)(`node: a basic run completes as uid 1000${c.label}`, async ({ expect }) => {
    const { execution: e } = await h.run({
      language: "node",
      code: "console.log('hello', process.getuid(), process.cwd())",
    });
    expect(e.status, describeRun(e)).toBe("completed");
    expect(e.stdout).toBe("hello 1000 /workspace\n");
  });

  for (const [language, code] of [
    ["bash", "while :; do :; done"],
    ["node", "for (;;) {}"],
  ] as const) {
    it.skipIf(c.skip)(
      `#1 ${language}: an infinite loop is ended: timed_out/time${c.label}`,
      async ({ expect }) => {
        const { execution: e } = await h.run({ language, code, limits: { timeMs: 2_000 } });
        expect(e.status, describeRun(e)).toBe("timed_out");
        expect(e.limit).toBe("time");
        expect(e.error?.category).toBe("timeout");
        expect([137, 152]).toContain(e.exit_code);
        h.report(`1-${language}-loop`, e);
      },
    );
  }

  it.skipIf(c.skip)(`#15 bash: yes is stopped at the output cap${c.label}`, async ({ expect }) => {
    const { execution: e } = await h.run({ language: "bash", code: "yes flood" });
    expect(e.status, describeRun(e)).toBe("failed");
    expect(e.limit).toBe("output");
    expect(e.error?.category).toBe("output");
    expect(e.truncated).toBe(true);
    expect(e.stdout_bytes).toBeGreaterThan(SUITE_LIMITS.outputBytes);
    expect(e.stdout.startsWith("flood\nflood\n")).toBe(true);
    expect(Buffer.byteLength(e.stdout)).toBeLessThan(SUITE_LIMITS.outputBytes + 100);
    h.report("15-bash-yes", e);
  });
});
