/**
 * `runcell serve`: live events. SSE on execute and on an execution's events, the WebSocket of a
 * session (live frames, execute and interrupt over it, replay from a cursor after a
 * disconnect), events fetched after the fact, interrupt over HTTP, and a kernel that dies mid-run.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  cmdlineOf,
  createSession,
  describeExecution,
  descendants,
  type Execution,
  type ExecutionEvent,
  execute,
  expectStatus,
  openSse,
  openWs,
  pollUntilAsync,
  request,
  resultText,
  type Server,
  type Session,
  type SseEvent,
  startServer,
  type WsClient,
  type WsFrame,
  waitForSession,
} from "./server-helpers.js";

let server: Server;
let alice: string;
let session: Session;

beforeAll(async () => {
  server = await startServer();
  alice = server.tokens.alice!;
  session = await createSession(server, alice);
  const setup = await execute(server, alice, session.id, "kept = 'still here'");
  expect(setup.status).toBe("completed");
});
afterAll(async () => {
  await server?.stop();
});
// A case that failed midway may leave a long sleep running: free the session for the next one.
afterEach(async () => {
  if (!session) return;
  const current = await request(server, "GET", `/api/v1/sessions/${session.id}`, { token: alice });
  if (current.json?.status === "busy") {
    await request(server, "POST", `/api/v1/sessions/${session.id}/interrupt`, { token: alice });
  }
});

const executePath = () => `/api/v1/sessions/${session.id}/execute`;
const wsPath = (after?: number) =>
  `/api/v1/sessions/${session.id}/ws?token=${encodeURIComponent(alice)}${after === undefined ? "" : `&after=${after}`}`;

/** Checks an SSE event list: ids are the events' seqs, 1, 2, 3… without gaps; the last is `done`. */
function expectWellFormedSse(events: SseEvent[], executionId?: string): Execution {
  expect(events.length).toBeGreaterThan(1);
  for (const [i, event] of events.entries()) {
    expect(event.data.seq, JSON.stringify(event)).toBe(i + 1);
    expect(event.id).toBe(String(event.data.seq));
    expect(event.event).toBe(event.data.type);
    expect(event.data.execution_id).toBe(executionId ?? events[0]!.data.execution_id);
  }
  const last = events.at(-1)!;
  expect(last.event).toBe("done");
  expect(events.filter((e) => e.event === "done")).toHaveLength(1);
  return last.data.execution as Execution;
}

/**
 * An interrupted run: the kernel raised KeyboardInterrupt, and the record is `cancelled` with
 * category cancelled (an interrupt is the caller's decision, not a failure of the code).
 */
function expectInterrupted(record: Execution): void {
  expect(record.outputs.some((o) => o.type === "error" && o.name === "KeyboardInterrupt")).toBe(true);
  expect(record, describeExecution(record)).toMatchObject({
    status: "cancelled",
    error: { category: "cancelled" },
  });
  expect(record.limit).toBeNull();
}

/** The seq-numbered session frames of a WebSocket, in arrival order. */
const sequenced = (frames: WsFrame[]) => frames.filter((frame) => typeof frame.seq === "number");

describe("SSE", () => {
  it("streams an execute's events in order, ending with done and the full record", async () => {
    const code = "print('one', flush=True)\nprint('two', flush=True)\n6 * 7";
    const stream = await openSse(server, "POST", executePath(), { token: alice, body: { code } });
    expect(stream.status).toBe(200);
    expect(stream.headers["content-type"]).toMatch(/^text\/event-stream/);
    expect(stream.headers["x-request-id"]).toEqual(expect.any(String));
    const events = await stream.rest();
    const record = expectWellFormedSse(events);
    expect(record, describeExecution(record)).toMatchObject({
      code,
      status: "completed",
      stdout: "one\ntwo\n",
      session_id: session.id,
    });
    expect(resultText(record)).toBe("42");
    const types = events.map((e) => e.event);
    expect(types[0]).toBe("status");
    expect(types).toContain("output");
    // Outputs arrive in the order the code produced them.
    const outputs = events.filter((e) => e.event === "output").map((e) => e.data.output);
    expect(
      outputs
        .filter((o) => o.type === "stream")
        .map((o) => o.text)
        .join(""),
    ).toBe("one\ntwo\n");
    expect(outputs.at(-1)).toMatchObject({ type: "result", data: { "text/plain": "42" } });
    // The record in `done` is the stored one.
    const stored = await expectStatus(200, server, "GET", `/api/v1/executions/${record.id}`, {
      token: alice,
    });
    expect(stored).toEqual(record);
  });

  it("delivers output while the code still runs; interrupt ends it with KeyboardInterrupt and keeps state", async () => {
    const code = "import time\nprint('waiting', flush=True)\ntime.sleep(600)";
    const stream = await openSse(server, "POST", executePath(), { token: alice, body: { code } });
    const seen: SseEvent[] = [];
    for (;;) {
      const event = await stream.next();
      seen.push(event);
      if (event.event === "output" && event.data.output.text?.includes("waiting")) break;
      expect(event.event).not.toBe("done");
    }
    const id = seen[0]!.data.execution_id as string;
    // The output reached us while the execution was running: it cannot end without the interrupt.
    const live = await expectStatus(200, server, "GET", `/api/v1/executions/${id}`, { token: alice });
    expect(live.status).toBe("running");
    // A live record shows the output so far.
    expect(live.stdout, "stdout of the live record").toBe("waiting\n");
    const busy = await expectStatus(200, server, "GET", `/api/v1/sessions/${session.id}`, { token: alice });
    expect(busy.status).toBe("busy");
    const sofar = await expectStatus(200, server, "GET", `/api/v1/executions/${id}/events`, { token: alice });
    expect(sofar.complete).toBe(false);
    expect(sofar.events).toEqual(seen.map((e) => e.data));

    const interrupted = await expectStatus(200, server, "POST", `/api/v1/sessions/${session.id}/interrupt`, {
      token: alice,
    });
    expect(interrupted.id).toBe(session.id);
    const record = expectWellFormedSse([...seen, ...(await stream.rest())], id);
    expectInterrupted(record);
    expect(record.stdout).toBe("waiting\n");
    const check = await execute(server, alice, session.id, "kept");
    expect(resultText(check), describeExecution(check)).toBe("'still here'");
    const after = await expectStatus(200, server, "GET", `/api/v1/sessions/${session.id}`, { token: alice });
    expect(after).toMatchObject({ restarts: 0, state_lost_at: null });
  });
});

describe("client disconnects", () => {
  it("keeps running by default, and is cancelled when the client asked cancel_on_disconnect", async () => {
    const code = "import time\nprint('started', flush=True)\ntime.sleep(600)";
    const waitForStart = async (stream: Awaited<ReturnType<typeof openSse>>) => {
      for (;;) {
        const event = await stream.next();
        if (event.event === "output") return event.data.execution_id as string;
      }
    };
    const cancelling = await openSse(server, "POST", executePath(), {
      token: alice,
      body: { code, cancel_on_disconnect: true },
    });
    const id = await waitForStart(cancelling);
    cancelling.close();
    let record: Execution | undefined;
    await pollUntilAsync(async () => {
      record = await expectStatus(200, server, "GET", `/api/v1/executions/${id}`, { token: alice });
      return record!.status !== "running";
    }, 20_000);
    expect(record, describeExecution(record)).toMatchObject({
      status: "cancelled",
      error: { category: "cancelled" },
    });

    const staying = await openSse(server, "POST", executePath(), {
      token: alice,
      body: { code: "import time\nprint('started', flush=True)\ntime.sleep(1)\nprint('done')" },
    });
    const kept = await waitForStart(staying);
    staying.close();
    let finished: Execution | undefined;
    await pollUntilAsync(async () => {
      finished = await expectStatus(200, server, "GET", `/api/v1/executions/${kept}`, { token: alice });
      return finished!.status !== "running" && finished!.status !== "queued";
    }, 20_000);
    expect(finished, describeExecution(finished)).toMatchObject({
      status: "completed",
      stdout: "started\ndone\n",
    });
  });
});

describe("SSE refusals", () => {
  it("answers a bad request for a stream with a JSON error, not a stream", async () => {
    const bad = await openSse(server, "POST", executePath(), { token: alice, body: { code: 42 } });
    expect(bad.status).toBe(400);
    expect(bad.headers["content-type"]).toMatch(/application\/json/);
    expect(JSON.parse(await bad.body()).error.code).toBe("INVALID_REQUEST");
    const unknown = await openSse(
      server,
      "GET",
      "/api/v1/executions/00000000-0000-0000-0000-000000000000/events",
      {
        token: alice,
      },
    );
    expect(unknown.status).toBe(404);
    expect(JSON.parse(await unknown.body()).error.code).toBe("EXECUTION_NOT_FOUND");
    const anonymous = await openSse(server, "POST", executePath(), { body: { code: "1" } });
    expect(anonymous.status).toBe(401);
    await anonymous.body();
  });
});

describe("an execution's events", () => {
  let record: Execution;

  beforeAll(async () => {
    record = await execute(server, alice, session.id, "for i in range(5):\n    print(i, flush=True)");
    expect(record.status).toBe("completed");
  });

  it("GET /executions/{id} and /events return the finished run after the fact", async () => {
    expect(
      await expectStatus(200, server, "GET", `/api/v1/executions/${record.id}`, { token: alice }),
    ).toEqual(record);
    const all = await expectStatus(200, server, "GET", `/api/v1/executions/${record.id}/events`, {
      token: alice,
    });
    expect(all).toMatchObject({ execution_id: record.id, complete: true });
    const events = all.events as ExecutionEvent[];
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.at(-1)).toMatchObject({ type: "done", execution: { id: record.id, status: "completed" } });
    const streamed = events
      .filter((e) => e.type === "output")
      .map((e) => (e.type === "output" && e.output.type === "stream" ? e.output.text : ""))
      .join("");
    expect(streamed).toBe("0\n1\n2\n3\n4\n");

    const after = 2;
    const tail = await expectStatus(
      200,
      server,
      "GET",
      `/api/v1/executions/${record.id}/events?after=${after}`,
      {
        token: alice,
      },
    );
    expect(tail).toMatchObject({ execution_id: record.id, complete: true });
    expect(tail.events).toEqual(events.filter((e) => e.seq > after));
    const none = await expectStatus(
      200,
      server,
      "GET",
      `/api/v1/executions/${record.id}/events?after=${events.length}`,
      { token: alice },
    );
    expect(none).toMatchObject({ events: [], complete: true });
  });

  it("streams a finished run's events over SSE from the cursor, then ends", async () => {
    const stream = await openSse(server, "GET", `/api/v1/executions/${record.id}/events?after=1`, {
      token: alice,
    });
    expect(stream.status).toBe(200);
    const events = await stream.rest();
    expect(events.map((e) => e.data.seq)[0]).toBe(2);
    expect(events.at(-1)!.event).toBe("done");
    expect(events.at(-1)!.data.execution.id).toBe(record.id);
  });

  it("streams a running execution's events live until done", async () => {
    const code = "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.3)";
    const running = await openSse(server, "POST", executePath(), { token: alice, body: { code } });
    const first = await running.next();
    const id = first.data.execution_id as string;
    const follower = await openSse(server, "GET", `/api/v1/executions/${id}/events?after=0`, {
      token: alice,
    });
    expect(follower.status).toBe(200);
    const followed = await follower.rest();
    const own = [first, ...(await running.rest())];
    const record = expectWellFormedSse(followed, id);
    expect(record.stdout).toBe("tick 0\ntick 1\ntick 2\n");
    // Both streams saw the same events.
    expect(followed.map((e) => e.data)).toEqual(own.map((e) => e.data));
  });
});

describe("WebSocket", () => {
  let observer: WsClient;

  beforeAll(async () => {
    // Connected throughout: what it sees is the reference for replays.
    observer = await openWs(server, wsPath());
  });
  afterAll(async () => {
    await observer?.close();
  });

  it("answers ping with pong and a bad frame with an error, staying open", async () => {
    const ws = await openWs(server, wsPath());
    try {
      ws.send({ type: "ping" });
      expect(await ws.next((f) => f.type === "pong")).toEqual({ type: "pong" });
      ws.ws.send("this is not json");
      const error = await ws.next((f) => f.type === "error");
      expect(error.error).toMatchObject({ code: expect.any(String), message: expect.any(String) });
      ws.send({ type: "no-such-type", request_id: "r-bad" });
      // A refused message that carried a request_id is answered with it, so the client can
      // tell which of its requests failed (soft: the socket checks below still run).
      const second = await ws.next((f) => f.type === "error");
      expect(second.error.code).toBe("INVALID_REQUEST");
      expect.soft(second.request_id, "request_id of the error for an unknown type").toBe("r-bad");
      ws.send({ type: "execute", request_id: "r-nocode" });
      const third = await ws.next((f) => f.type === "error");
      expect(third.error).toMatchObject({
        code: "INVALID_REQUEST",
        message: expect.stringContaining("code"),
      });
      expect.soft(third.request_id, "request_id of the error for an execute without code").toBe("r-nocode");
      ws.send({ type: "ping" });
      await ws.next((f) => f.type === "pong");
    } finally {
      await ws.close();
    }
  });

  it("executes over the socket and streams that execution's events as session frames", async () => {
    const ws = await openWs(server, wsPath());
    try {
      ws.send({ type: "execute", code: "print('over ws')\n'done'", request_id: "req-1" });
      const accepted = await ws.next((f) => f.type === "accepted");
      expect(accepted).toMatchObject({ request_id: "req-1", execution_id: expect.any(String) });
      const done = await ws.next(
        (f) =>
          f.type === "execution" && f.event.type === "done" && f.event.execution_id === accepted.execution_id,
      );
      expect(done.event.execution).toMatchObject({ status: "completed", stdout: "over ws\n" });
      expect(resultText(done.event.execution)).toBe("'done'");
      const frames = sequenced(ws.frames);
      for (let i = 1; i < frames.length; i++) expect(frames[i]!.seq).toBe(frames[i - 1]!.seq + 1);
      for (const frame of frames) expect(frame.session_id).toBe(session.id);
      const mine = frames.filter(
        (f) => f.type === "execution" && f.event.execution_id === accepted.execution_id,
      );
      expect(mine.map((f) => f.event.seq)).toEqual(mine.map((_, i) => i + 1));
    } finally {
      await ws.close();
    }
  });

  it("replays exactly the missed events after a reconnect with ?after=N", async () => {
    const first = await openWs(server, wsPath());
    first.send({ type: "execute", code: "print('before the gap')", request_id: "gap-1" });
    const accepted = await first.next((f) => f.type === "accepted");
    await first.next(
      (f) =>
        f.type === "execution" && f.event.type === "done" && f.event.execution_id === accepted.execution_id,
    );
    const cursor = Math.max(...sequenced(first.frames).map((f) => f.seq));
    await first.close();

    // While disconnected: two executions.
    const missedA = await execute(server, alice, session.id, "print('missed A')");
    const missedB = await execute(server, alice, session.id, "print('missed B')");
    await observer.next(
      (f) => f.type === "execution" && f.event.type === "done" && f.event.execution_id === missedB.id,
    );

    const again = await openWs(server, wsPath(cursor));
    try {
      await again.next(
        (f) => f.type === "execution" && f.event.type === "done" && f.event.execution_id === missedB.id,
      );
      const replayed = sequenced(again.frames);
      expect(replayed[0]!.seq).toBe(cursor + 1);
      expect(replayed).toEqual(sequenced(observer.frames).filter((f) => f.seq > cursor));
      const doneIds = replayed
        .filter((f) => f.type === "execution" && f.event.type === "done")
        .map((f) => f.event.execution_id);
      expect(doneIds).toEqual([missedA.id, missedB.id]);
      expect(again.frames.some((f) => f.type === "gap")).toBe(false);
    } finally {
      await again.close();
    }

    // A cursor of 0 replays the whole retained history, the first run included.
    const full = await openWs(server, wsPath(0));
    try {
      await full.next(
        (f) => f.type === "execution" && f.event.type === "done" && f.event.execution_id === missedB.id,
      );
      const frames = sequenced(full.frames);
      expect(frames[0]!.seq).toBe(1);
      expect(
        frames.some((f) => f.type === "execution" && f.event.execution_id === accepted.execution_id),
      ).toBe(true);
    } finally {
      await full.close();
    }
  });

  it("interrupts over the socket", async () => {
    const ws = await openWs(server, wsPath());
    try {
      ws.send({
        type: "execute",
        code: "import time\nprint('sleeping', flush=True)\ntime.sleep(600)",
        request_id: "i",
      });
      const accepted = await ws.next((f) => f.type === "accepted");
      await ws.next(
        (f) =>
          f.type === "execution" &&
          f.event.execution_id === accepted.execution_id &&
          f.event.type === "output" &&
          f.event.output.text?.includes("sleeping"),
      );
      ws.send({ type: "interrupt" });
      const done = await ws.next(
        (f) =>
          f.type === "execution" && f.event.type === "done" && f.event.execution_id === accepted.execution_id,
      );
      expectInterrupted(done.event.execution as Execution);
    } finally {
      await ws.close();
    }
    const check = await execute(server, alice, session.id, "kept");
    expect(resultText(check)).toBe("'still here'");
  });
});

describe("WebSocket replay past what is retained", () => {
  it("says so with a gap frame, then replays from the oldest kept event", async () => {
    // More output events than the session keeps for replay.
    const flood = await execute(server, alice, session.id, "for i in range(5500):\n    print(i, flush=True)");
    expect(flood.status).toBe("completed");
    const ws = await openWs(server, wsPath(1));
    try {
      const gap = await ws.next((f) => f.type === "gap" || typeof f.seq === "number");
      expect(gap).toMatchObject({ type: "gap", oldest_seq: expect.any(Number) });
      expect(gap.oldest_seq).toBeGreaterThan(2);
      const first = await ws.next((f) => typeof f.seq === "number");
      expect(first.seq).toBe(gap.oldest_seq);
      await ws.next(
        (f) => f.type === "execution" && f.event.type === "done" && f.event.execution_id === flood.id,
      );
      const frames = sequenced(ws.frames);
      for (let i = 1; i < frames.length; i++) expect(frames[i]!.seq).toBe(frames[i - 1]!.seq + 1);
    } finally {
      await ws.close();
    }
  });
});

describe("kernel death", () => {
  it.each([
    ["os._exit(1)", "import os\nos._exit(1)"],
    ["SIGKILL", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"],
  ])(
    "%s mid-execute fails it with kernel_died; the next execute runs on a fresh kernel",
    async (_name, code) => {
      const ws = await openWs(server, wsPath());
      try {
        const before = await expectStatus(200, server, "GET", `/api/v1/sessions/${session.id}`, {
          token: alice,
        });
        await execute(server, alice, session.id, "doomed = 1");
        const died = await execute(server, alice, session.id, code);
        expect(died, describeExecution(died)).toMatchObject({
          status: "failed",
          error: { category: "kernel_died" },
        });
        const notice = await ws.next((f) => f.type === "session" && f.reason === "died");
        expect(notice).toMatchObject({ session_id: session.id, state_lost: true });

        const next = await execute(server, alice, session.id, "print('alive again')");
        expect(next, describeExecution(next)).toMatchObject({ status: "completed", stdout: "alive again\n" });
        const lost = await execute(server, alice, session.id, "doomed");
        expect(lost.error?.name).toBe("NameError");
        const after: Session = await expectStatus(200, server, "GET", `/api/v1/sessions/${session.id}`, {
          token: alice,
        });
        expect(after).toMatchObject({
          restarts: before.restarts + 1,
          last_restart_reason: "died",
          status: "idle",
        });
        expect(after.state_lost_at).toEqual(expect.any(String));
        expect(after.kernel_id).not.toBeNull();
      } finally {
        await ws.close();
      }
      // Restore what later cases rely on.
      await execute(server, alice, session.id, "kept = 'still here'");
    },
  );

  it("a kernel killed from outside while idle is replaced; the session goes on with its state lost", async () => {
    const ws = await openWs(server, wsPath());
    try {
      await execute(server, alice, session.id, "doomed = 1");
      const before: Session = await expectStatus(200, server, "GET", `/api/v1/sessions/${session.id}`, {
        token: alice,
      });
      // The session's kernel: the processes whose argv holds its id (connection file path).
      const victims = descendants(server.pid).filter((pid) => cmdlineOf(pid).includes(before.kernel_id!));
      // Killing bwrap takes its sandbox with it, so a later pid of the list may be gone already.
      const killed = victims.filter((pid) => {
        try {
          process.kill(pid, "SIGKILL");
          return true;
        } catch {
          return false;
        }
      });
      expect(killed.length).toBeGreaterThan(0);

      const notice = await ws.next((f) => f.type === "session" && f.reason === "died");
      expect(notice).toMatchObject({ session_id: session.id, state_lost: true });
      const after = await waitForSession(
        server,
        alice,
        session.id,
        (s) => s.restarts === before.restarts + 1 && s.status === "idle",
      );
      expect(after).toMatchObject({ last_restart_reason: "died", status: "idle" });
      expect(after.state_lost_at).not.toBe(before.state_lost_at);
      const lost = await execute(server, alice, session.id, "doomed");
      expect(lost.error?.name).toBe("NameError");
      expect((await execute(server, alice, session.id, "print('carries on')")).stdout).toBe("carries on\n");
    } finally {
      await ws.close();
    }
    await execute(server, alice, session.id, "kept = 'still here'");
  });
});
