/**
 * Attacks: the engine's memory through output. An endless `print("Piston is secure")`
 * (HOSTILE.md #15, anchor: Piston `tests/runaway_output.py`, `OL`), stderr flooded while
 * stdout stays small (#16, Piston `EL`), and stdout flooded with no newline at all (#17,
 * Piston `output_max_size`). The literal one-shot forms `sys.stderr.write('e'*10**9)` and
 * `sys.stdout.write('x'*10**9)` are covered too: building that 1 GB string hits the 256 MiB
 * memory cap before a byte is written.
 *
 * Expected for the floods: `failed`, `limit: output`, category `output`, `truncated: true`;
 * the stream that overflowed keeps its head and its tail around a marker naming the dropped
 * byte count; the other stream is untouched; what the runner keeps stays within the 1 MiB cap
 * (it is the runner's memory); stdout_bytes = kept + dropped.
 *
 * Deterministic: the floods never stop by themselves; the runner kills at the cap. Bytes still
 * in the pipe after the kill are read and counted, so the exact byte counts vary, but the
 * relations asserted hold for any amount.
 */
import { describe, it } from "vitest";
import type { Execution } from "../../../src/execution/types.js";
import { describeRun, needs, probeHost, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");
const mem = needs(host, "bwrap", "memory");
const CAP = SUITE_LIMITS.outputBytes;

const MARKER = /\n\[… (\d+) bytes of output dropped …\]\n/;

/** Checks the capped stream: marker, head and tail within the cap, byte accounting. */
function expectCapped(
  expect: typeof import("vitest").expect,
  e: Execution,
  stream: "stdout" | "stderr",
): { head: string; tail: string } {
  const text = e[stream];
  const match = MARKER.exec(text);
  expect(match, `no drop marker in ${stream}`).not.toBeNull();
  const dropped = Number(match![1]);
  const head = text.slice(0, match!.index);
  const tail = text.slice(match!.index + match![0].length);
  const kept = Buffer.byteLength(head) + Buffer.byteLength(tail);
  expect(kept).toBeLessThanOrEqual(CAP);
  expect(kept).toBeGreaterThan(CAP - 8);
  expect(dropped).toBe(e.dropped_bytes);
  expect(e[`${stream}_bytes`]).toBe(kept + dropped);
  expect(e[`${stream}_bytes`]).toBeGreaterThan(CAP);
  return { head, tail };
}

function expectOutputLimit(expect: typeof import("vitest").expect, e: Execution): void {
  expect(e.status, describeRun(e)).toBe("failed");
  expect(e.limit).toBe("output");
  expect(e.error?.category).toBe("output");
  expect(e.truncated).toBe(true);
  expect(e.exit_code).toBe(137);
}

describe.concurrent("output floods", () => {
  it.skipIf(c.skip)(
    `#15 endless print is stopped at the cap; head and tail kept${c.label}`,
    async ({ expect }) => {
      const before = process.memoryUsage().rss;
      const { execution: e } = await h.run({
        language: "python",
        code: "while True: print('Piston is secure')",
      });
      expectOutputLimit(expect, e);
      const { head, tail } = expectCapped(expect, e, "stdout");
      expect(head.startsWith("Piston is secure\nPiston is secure\n")).toBe(true);
      expect("Piston is secure\n".repeat(3)).toContain(tail.slice(-17 * 2));
      expect(e.stderr).toBe("");
      h.report("15-print-flood", e, { runner_rss_delta: process.memoryUsage().rss - before });
    },
  );

  it.skipIf(c.skip)(`#16 stderr flood is capped on its own; stdout intact${c.label}`, async ({ expect }) => {
    const code = "import sys\nprint('stdout line', flush=True)\nwhile True: sys.stderr.write('e' * 65536)";
    const { execution: e } = await h.run({ language: "python", code });
    expectOutputLimit(expect, e);
    const { head, tail } = expectCapped(expect, e, "stderr");
    expect(/^e+$/.test(head) && /^e+$/.test(tail)).toBe(true);
    expect(e.stdout).toBe("stdout line\n");
    expect(e.stdout_bytes).toBe(12);
    h.report("16-stderr-flood", e);
  });

  it.skipIf(c.skip)(
    `#17 a stdout flood without newlines stays within the cap${c.label}`,
    async ({ expect }) => {
      const code = "import sys\nwhile True: sys.stdout.write('x' * (1 << 20))";
      const { execution: e } = await h.run({ language: "python", code });
      expectOutputLimit(expect, e);
      const { head, tail } = expectCapped(expect, e, "stdout");
      expect(/^x+$/.test(head) && /^x+$/.test(tail)).toBe(true);
      // The record as a whole is bounded: no unbounded line buffer anywhere.
      expect(e.stdout.length).toBeLessThan(CAP + 100);
      h.report("17-no-newline-flood", e);
    },
  );

  it.skipIf(c.skip)(
    `#15 callbacks see the same capped stream as the record${c.label}`,
    async ({ expect }) => {
      let streamed = 0;
      const { execution: e } = await h.run({
        language: "python",
        code: "while True: print('x' * 100)",
        onStdout: (text) => (streamed += Buffer.byteLength(text)),
      });
      expectOutputLimit(expect, e);
      expect(streamed).toBe(e.stdout_bytes);
    },
  );

  it.skipIf(mem.skip)(
    `#16/#17 literal 'e'*10**9 to stderr and 'x'*10**9 to stdout hit the memory cap first${mem.label}`,
    async ({ expect }) => {
      for (const code of [
        "import sys\nsys.stderr.write('e' * 10**9)",
        "import sys\nsys.stdout.write('x' * 10**9)",
      ]) {
        const { execution: e } = await h.run({ language: "python", code });
        expect(e.status, describeRun(e)).toBe("failed");
        expect(e.limit).toBe("memory");
        expect(e.error?.category).toBe("memory");
        expect(e.stdout_bytes + e.stderr_bytes).toBe(0);
        h.report(code.includes("stderr") ? "16-literal" : "17-literal", e);
      }
    },
  );
});
