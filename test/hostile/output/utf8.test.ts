/**
 * Attacks: the output decoder. Multi-byte characters split across separate writes and
 * invalid bytes (HOSTILE.md #18, anchor: E2B `commandHandle.ts` decoders).
 *
 * Expected: a character split across writes (and so across pipe reads) is reassembled;
 * each invalid byte or truncated sequence becomes U+FFFD; an incomplete sequence at the very
 * end of the stream is flushed as U+FFFD rather than lost; both streams behave the same; the
 * text handed to onStdout adds up to the record's stdout.
 *
 * Deterministic: the bytes written are fixed; the decoder's output does not depend on how the
 * kernel splits them into reads (each write is flushed and followed by a short pause only so
 * that splits do happen in practice).
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

/** Python that writes each chunk separately to `stream`, flushing and pausing in between. */
function writes(stream: "stdout" | "stderr", chunks: string[]): string {
  return [
    "import sys, time",
    `out = sys.${stream}.buffer`,
    `for chunk in [${chunks.join(", ")}]:`,
    "    out.write(chunk)",
    "    out.flush()",
    "    time.sleep(0.05)",
  ].join("\n");
}

describe.concurrent("split and invalid UTF-8", () => {
  it.skipIf(c.skip)(`#18 b'\\xe2\\x82' then b'\\xac\\xff' gives "€\\uFFFD"${c.label}`, async ({ expect }) => {
    let streamed = "";
    const { execution: e } = await h.run({
      language: "python",
      code: writes("stdout", ["b'\\xe2\\x82'", "b'\\xac\\xff'"]),
      onStdout: (text) => (streamed += text),
    });
    expect(e.status, describeRun(e)).toBe("completed");
    expect(e.stdout).toBe("€\uFFFD");
    expect(streamed).toBe(e.stdout);
    h.report("18-euro", e, { replacements: [...e.stdout].filter((ch) => ch === "\uFFFD").length });
  });

  for (const stream of ["stdout", "stderr"] as const) {
    it.skipIf(c.skip)(
      `#18 ${stream}: a 4-byte character in three writes, an invalid byte, a truncated tail${c.label}`,
      async ({ expect }) => {
        const { execution: e } = await h.run({
          language: "python",
          code: writes(stream, ["b'a\\xf0\\x9f'", "b'\\x98'", "b'\\x80b\\xc3('", "b'\\xe2\\x82'"]),
        });
        expect(e.status, describeRun(e)).toBe("completed");
        expect(e[stream]).toBe("a😀b\uFFFD(\uFFFD");
        expect(e[stream === "stdout" ? "stderr" : "stdout"]).toBe("");
        h.report(`18-split-${stream}`, e);
      },
    );
  }
});
