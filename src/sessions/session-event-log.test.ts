import { describe, expect, it } from "vitest";
import { SessionEventLog } from "./session-event-log.js";
import type { SessionEvent } from "./types.js";

describe("SessionEventLog", () => {
  it("numbers events from 1 and replays exactly those after a cursor, then follows live", () => {
    const log = new SessionEventLog("s");
    for (let i = 0; i < 5; i++) log.push({ type: "session", status: "idle" });
    const seen: SessionEvent[] = [];
    const { unsubscribe, gap } = log.subscribe(3, (event) => seen.push(event));
    expect(gap).toBe(false);
    log.push({ type: "session", status: "busy" });
    expect(seen.map((e) => e.seq)).toEqual([4, 5, 6]);
    expect(seen.every((e) => e.session_id === "s")).toBe(true);
    unsubscribe();
    log.push({ type: "session", status: "idle" });
    expect(seen).toHaveLength(6 - 3);
  });

  it("keeps the last `capacity` events and reports a gap to a cursor older than them", () => {
    const log = new SessionEventLog("s", 3);
    for (let i = 0; i < 10; i++) log.push({ type: "session", status: "idle" });
    expect(log.oldestSeq).toBe(8);
    const seen: number[] = [];
    expect(log.subscribe(2, (e) => seen.push(e.seq)).gap).toBe(true);
    expect(seen).toEqual([8, 9, 10]);
    expect(log.subscribe(7, () => undefined).gap).toBe(false);
    expect(log.subscribe(10, () => undefined).gap).toBe(false);
  });

  it("keeps delivering to others when one subscriber throws", () => {
    const log = new SessionEventLog("s");
    const seen: number[] = [];
    log.subscribe(0, () => {
      throw new Error("boom");
    });
    log.subscribe(0, (e) => seen.push(e.seq));
    log.push({ type: "session", status: "idle" });
    expect(seen).toEqual([1]);
  });
});
