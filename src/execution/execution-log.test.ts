import { describe, expect, it } from "vitest";
import { ExecutionLog } from "./execution-log.js";
import { newExecution } from "./new-execution.js";
import type { Execution, ExecutionEvent } from "./types.js";

const limits = { time_ms: null, memory_bytes: null, pids: null, output_bytes: null, network: null };

function setup(maxEvents?: number) {
  const saved: Array<{ userId: string; status: string; events?: ExecutionEvent[] }> = [];
  const log = new ExecutionLog({
    sink: { save: (userId, execution, events) => saved.push({ userId, status: execution.status, events }) },
    maxEvents,
  });
  const record = newExecution({ language: "python", code: "print(1)", limits });
  let seq = 0;
  const event = (init: Record<string, unknown>) =>
    ({ ...init, seq: ++seq, execution_id: record.id }) as ExecutionEvent;
  return { log, saved, record, event };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe("ExecutionLog", () => {
  it("holds events sent before attach, replays after a cursor, and saves at start and at the end", async () => {
    const { log, saved, record, event } = setup();
    const recording = log.open("u1");
    recording.onEvent(event({ type: "status", status: "queued" }));
    recording.attach(record);
    recording.onEvent(event({ type: "output", output: { type: "stream", name: "stdout", text: "a" } }));
    const seen: number[] = [];
    log.subscribe(record.id, 1, (e) => seen.push(e.seq));
    expect(seen).toEqual([2]);
    expect(log.view(record.id)?.stdout).toBe("a");
    await turn();
    expect(saved).toEqual([{ userId: "u1", status: "queued", events: undefined }]);

    const finished: Execution = { ...record, status: "completed", stdout: "a" };
    recording.onEvent(event({ type: "done", execution: finished }));
    expect(seen).toEqual([2, 3]);
    // Saved as it ends, before anyone is answered.
    expect(saved.at(-1)).toMatchObject({ status: "completed" });
    expect(saved.at(-1)?.events?.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(log.get(record.id)).toBeUndefined();
    expect(log.size).toBe(0);
  });

  it("keeps at most maxEvents, always the done event, and says so", async () => {
    const { log, record, event } = setup(2);
    const recording = log.open("u1");
    recording.attach(record);
    for (let i = 0; i < 5; i++) {
      recording.onEvent(event({ type: "output", output: { type: "stream", name: "stdout", text: `${i}` } }));
    }
    expect(log.get(record.id)?.events).toHaveLength(2);
    expect(log.get(record.id)?.eventsTruncated).toBe(true);
    const live = log.get(record.id)!;
    recording.onEvent(event({ type: "done", execution: { ...record, status: "completed" } }));
    expect(live.events.at(-1)?.type).toBe("done");
    expect(live.events).toHaveLength(3);
  });

  it("a throwing subscriber does not stop the others or the record", async () => {
    const { log, saved, record, event } = setup();
    const recording = log.open("u1");
    recording.attach(record);
    log.subscribe(record.id, 0, () => {
      throw new Error("boom");
    });
    const seen: string[] = [];
    log.subscribe(record.id, 0, (e) => seen.push(e.type));
    recording.onEvent(event({ type: "done", execution: { ...record, status: "failed" } }));
    expect(seen).toEqual(["done"]);
    expect(saved.at(-1)?.status).toBe("failed");
  });
});
