import { describe, expect, it } from "vitest";
import { OutputCollector } from "./output-collector.js";
import type { DisplayOutput, Output } from "./types.js";

const big = { streamBytes: 1 << 20, richBytes: 1 << 20 };

function display(text: string, displayId?: string): DisplayOutput {
  const output: DisplayOutput = { type: "display", data: { "text/plain": text }, metadata: {} };
  if (displayId !== undefined) output.display_id = displayId;
  return output;
}

/** All text of one stream as it appears in `outputs`, in order. */
function streamText(outputs: Output[], name: "stdout" | "stderr"): string {
  return outputs
    .filter((o) => o.type === "stream" && o.name === name)
    .map((o) => (o.type === "stream" ? o.text : ""))
    .join("");
}

describe("OutputCollector streams", () => {
  it("merges consecutive chunks of the same stream into one output", () => {
    const collector = new OutputCollector(big);
    expect(collector.addStream("stdout", "a")).toBe(true);
    collector.addStream("stdout", "b\n");
    collector.addStream("stderr", "warn\n");
    collector.addStream("stdout", "c");
    const snapshot = collector.snapshot();
    expect(snapshot.outputs).toEqual([
      { type: "stream", name: "stdout", text: "ab\n" },
      { type: "stream", name: "stderr", text: "warn\n" },
      { type: "stream", name: "stdout", text: "c" },
    ]);
    expect(snapshot).toMatchObject({
      stdout: "ab\nc",
      stderr: "warn\n",
      stdout_bytes: 4,
      stderr_bytes: 5,
      dropped_bytes: 0,
      truncated: false,
    });
  });

  it("does not merge a stream across a rich output", () => {
    const collector = new OutputCollector(big);
    collector.addStream("stdout", "1");
    collector.addRich(display("d"));
    collector.addStream("stdout", "2");
    expect(collector.snapshot().outputs.map((o) => o.type)).toEqual(["stream", "display", "stream"]);
  });

  it("counts bytes, not characters", () => {
    const collector = new OutputCollector(big);
    collector.addStream("stdout", "€😀");
    expect(collector.snapshot().stdout_bytes).toBe(7);
  });

  it("keeps head and tail of a flooded stream with a drop marker, and accounts for the drop", () => {
    const collector = new OutputCollector({ streamBytes: 20, richBytes: 1000 });
    let full = "";
    for (let i = 0; i < 30; i++) {
      const line = `line ${String(i).padStart(2, "0")}\n`; // 8 bytes
      collector.addStream("stdout", line);
      full += line;
    }
    const snapshot = collector.snapshot();
    expect(snapshot.stdout_bytes).toBe(240);
    expect(snapshot.dropped_bytes).toBe(220);
    expect(snapshot.truncated).toBe(true);
    expect(snapshot.stdout).toBe(
      `${full.slice(0, 10)}\n[… 220 bytes of output dropped …]\n${full.slice(-10)}`,
    );
    expect(snapshot.outputs).toEqual([
      { type: "stream", name: "stdout", text: full.slice(0, 10) },
      { type: "stream", name: "stdout", text: `\n[… 220 bytes of stdout dropped …]\n${full.slice(-10)}` },
    ]);
  });

  it("adds the rest of a stream at the end when only the display half overflowed", () => {
    const collector = new OutputCollector({ streamBytes: 20, richBytes: 1000 });
    collector.addStream("stdout", "abcdefgh");
    collector.addRich(display("picture"));
    expect(collector.addStream("stdout", "ijklmno")).toBe(true); // "ij" fits the 10-byte half
    expect(collector.addStream("stdout", "p")).toBe(false);
    const snapshot = collector.snapshot();
    expect(snapshot.truncated).toBe(false);
    expect(snapshot.dropped_bytes).toBe(0);
    expect(snapshot.stdout).toBe("abcdefghijklmnop");
    expect(streamText(snapshot.outputs, "stdout")).toBe("abcdefghijklmnop");
    expect(snapshot.outputs[1]).toEqual(display("picture"));
  });

  it("caps each stream separately", () => {
    const collector = new OutputCollector({ streamBytes: 10, richBytes: 1000 });
    collector.addStream("stdout", "x".repeat(50));
    collector.addStream("stderr", "short");
    const snapshot = collector.snapshot();
    expect(snapshot.stderr).toBe("short");
    expect(snapshot.stdout_bytes).toBe(50);
    expect(snapshot.dropped_bytes).toBe(40);
    expect(streamText(snapshot.outputs, "stderr")).toBe("short");
  });

  it("never splits a multi-byte character in the display head", () => {
    const collector = new OutputCollector({ streamBytes: 10, richBytes: 1000 });
    collector.addStream("stdout", "abcd€€€€€€");
    const snapshot = collector.snapshot();
    const first = snapshot.outputs[0];
    expect(first).toEqual({ type: "stream", name: "stdout", text: "abcd" });
    expect(JSON.stringify(snapshot)).not.toContain("\uFFFD");
  });
});

describe("OutputCollector clear_output", () => {
  it("clears the display at once without wait, but keeps the stdout log", () => {
    const collector = new OutputCollector(big);
    collector.addStream("stdout", "old\n");
    collector.addRich(display("old"));
    collector.clear(false);
    expect(collector.snapshot().outputs).toEqual([]);
    collector.addStream("stdout", "new\n");
    const snapshot = collector.snapshot();
    expect(snapshot.outputs).toEqual([{ type: "stream", name: "stdout", text: "new\n" }]);
    expect(snapshot.stdout).toBe("old\nnew\n");
  });

  it("with wait, keeps the old output until the next one arrives", () => {
    const collector = new OutputCollector(big);
    collector.addRich(display("frame 1"));
    collector.clear(true);
    expect(collector.snapshot().outputs).toEqual([display("frame 1")]);
    collector.addRich(display("frame 2"));
    expect(collector.snapshot().outputs).toEqual([display("frame 2")]);
  });

  it("with wait, a stream chunk also triggers the pending clear", () => {
    const collector = new OutputCollector(big);
    collector.addStream("stdout", "10%");
    collector.clear(true);
    collector.addStream("stdout", "20%");
    expect(collector.snapshot().outputs).toEqual([{ type: "stream", name: "stdout", text: "20%" }]);
    expect(collector.snapshot().stdout).toBe("10%20%");
  });

  it("frees the display budgets of what it cleared", () => {
    const collector = new OutputCollector({ streamBytes: 8, richBytes: 1000 });
    collector.addStream("stdout", "abcdefgh"); // fills the 4-byte display half
    collector.clear(false);
    expect(collector.addStream("stdout", "xy")).toBe(true);
    expect(collector.snapshot().outputs).toEqual([{ type: "stream", name: "stdout", text: "xy" }]);
  });
});

describe("OutputCollector update_display_data", () => {
  it("replaces data and metadata of every display with that id, and only those", () => {
    const collector = new OutputCollector(big);
    collector.addRich(display("v1", "progress"));
    collector.addRich(display("other", "other"));
    collector.addRich(display("v1 again", "progress"));
    const updated = collector.updateDisplay("progress", { "text/plain": "v2" }, { done: true });
    expect(updated).toMatchObject({ display_id: "progress", data: { "text/plain": "v2" } });
    expect(collector.snapshot().outputs).toEqual([
      { type: "display", data: { "text/plain": "v2" }, metadata: { done: true }, display_id: "progress" },
      display("other", "other"),
      { type: "display", data: { "text/plain": "v2" }, metadata: { done: true }, display_id: "progress" },
    ]);
  });

  it("returns undefined and changes nothing for an unknown id", () => {
    const collector = new OutputCollector(big);
    collector.addRich(display("v1", "a"));
    expect(collector.updateDisplay("missing", { "text/plain": "x" }, {})).toBeUndefined();
    expect(collector.snapshot().outputs).toEqual([display("v1", "a")]);
  });

  it("keeps the old data when the update would exceed the rich cap", () => {
    const collector = new OutputCollector({ streamBytes: 100, richBytes: 40 });
    collector.addRich(display("v1", "a"));
    expect(collector.updateDisplay("a", { "text/plain": "x".repeat(100) }, {})).toBeUndefined();
    const snapshot = collector.snapshot();
    expect(snapshot.outputs).toEqual([display("v1", "a")]);
    expect(snapshot.truncated).toBe(true);
    expect(snapshot.dropped_bytes).toBeGreaterThan(100);
  });
});

describe("OutputCollector rich output cap", () => {
  it("replaces a rich output that does not fit with a notice and counts its bytes as dropped", () => {
    const collector = new OutputCollector({ streamBytes: 100, richBytes: 50 });
    const small = display("ok");
    const image = { type: "display" as const, data: { "image/png": "A".repeat(200) }, metadata: {} };
    const imageBytes = Buffer.byteLength(JSON.stringify(image.data));
    expect(collector.addRich(small)).toEqual(small);
    const stored = collector.addRich(image);
    expect(stored).toEqual({
      type: "display",
      data: { "text/plain": `[display output of ${imageBytes} bytes dropped: over the 50-byte output cap]` },
      metadata: {},
    });
    const snapshot = collector.snapshot();
    expect(snapshot.outputs).toEqual([small, stored]);
    expect(snapshot.dropped_bytes).toBe(imageBytes);
    expect(snapshot.truncated).toBe(true);
  });

  it("keeps an oversized error's name and value but replaces its traceback", () => {
    const collector = new OutputCollector({ streamBytes: 100, richBytes: 30 });
    const stored = collector.addRich({
      type: "error",
      name: "ValueError",
      value: "bad",
      traceback: ["x".repeat(100)],
    });
    expect(stored).toMatchObject({ type: "error", name: "ValueError", value: "bad" });
    expect(stored.type === "error" && stored.traceback).toEqual([
      expect.stringMatching(/^\[error output of \d+ bytes dropped: over the 30-byte output cap\]$/),
    ]);
    expect(collector.snapshot().truncated).toBe(true);
  });

  it("counts a result against the rich cap as well", () => {
    const collector = new OutputCollector({ streamBytes: 100, richBytes: 20 });
    const stored = collector.addRich({
      type: "result",
      execution_count: 1,
      data: { "text/plain": "y".repeat(50) },
      metadata: {},
    });
    expect(stored.type).toBe("display");
    expect(collector.snapshot().outputs).toHaveLength(1);
  });

  it("snapshots are copies: later outputs do not change an earlier snapshot", () => {
    const collector = new OutputCollector(big);
    collector.addStream("stdout", "a");
    const first = collector.snapshot();
    collector.addStream("stdout", "b");
    expect(first.outputs).toEqual([{ type: "stream", name: "stdout", text: "a" }]);
    expect(collector.snapshot().outputs).toEqual([{ type: "stream", name: "stdout", text: "ab" }]);
  });
});
