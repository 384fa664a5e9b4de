/**
 * `runcell serve`: bad requests of every kind get the right 4xx with a machine-readable code,
 * and the server keeps serving afterwards. Also the per-user and server-wide session caps and
 * the per-session queue cap.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createSession,
  describeExecution,
  type Execution,
  execute,
  expectStatus,
  pollUntilAsync,
  request,
  type RequestOptions,
  type Response,
  type Server,
  type Session,
  startServer,
  waitForSession,
} from "./server-helpers.js";

let server: Server;
let alice: string;
let bob: string;

const MiB = 1024 * 1024;

beforeAll(async () => {
  server = await startServer({
    env: {
      RUNCELL_SESSIONS_MAX_PER_USER: "2",
      RUNCELL_SESSIONS_MAX_TOTAL: "3",
      RUNCELL_SESSIONS_MAX_QUEUED: "2",
      // One one-shot at a time and no waiting line: a second valid run is refused with 503.
      RUNCELL_ONESHOT_MAX_CONCURRENT: "1",
      RUNCELL_ONESHOT_MAX_WAITING: "0",
    },
  });
  alice = server.tokens.alice!;
  bob = server.tokens.bob!;
});
afterAll(async () => {
  await server?.stop();
});

/** Sends a request and checks the status and error code; returns the error message. */
async function expectError(
  status: number,
  code: string | string[],
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<string> {
  const response = await request(server, method, path, { token: alice, ...options });
  const what = `${method} ${path} ${options.raw === undefined ? JSON.stringify(options.body)?.slice(0, 120) : "(raw)"}`;
  expect(response.status, `${what}: ${response.text.slice(0, 300)}`).toBe(status);
  expect([code].flat(), `${what}: ${response.text.slice(0, 300)}`).toContain(response.json?.error?.code);
  expect(response.json.error.message, what).toEqual(expect.any(String));
  expect(response.headers["x-request-id"], what).toEqual(expect.any(String));
  return response.json.error.message as string;
}

async function expectHealthy(): Promise<void> {
  expect(await expectStatus(200, server, "GET", "/healthz", { token: null })).toMatchObject({ status: "ok" });
  expect(server.proc.exitCode).toBeNull();
}

describe("bad requests", () => {
  let session: Session;

  beforeAll(async () => {
    session = await createSession(server, alice);
  });
  afterAll(async () => {
    if (session) await request(server, "DELETE", `/api/v1/sessions/${session.id}`, { token: alice });
  });

  const bodies = () => ["/api/v1/execute", "/api/v1/sessions", `/api/v1/sessions/${session.id}/execute`];

  it("answers malformed JSON with 400 INVALID_JSON", async () => {
    for (const path of bodies()) {
      for (const raw of ['{"code": ', "{code: 'x'}", "\u0000\u0001", '{"code": "1"} trailing']) {
        await expectError(400, "INVALID_JSON", "POST", path, { raw });
      }
    }
    await expectHealthy();
  });

  it("answers wrong types and missing fields with 400 INVALID_REQUEST naming the field", async () => {
    const executeCases: Array<[unknown, string]> = [
      [{}, "code"],
      [{ code: 123 }, "code"],
      [{ code: null }, "code"],
      [{ code: ["print(1)"] }, "code"],
      [{ code: "1", timeout_ms: "soon" }, "timeout_ms"],
      [{ code: "1", timeout_ms: 1.5 }, "timeout_ms"],
      [{ code: "1", network: "yes" }, "network"],
      [{ code: "1", env: { A: 1 } }, "env"],
      [{ code: "1", env: "A=1" }, "env"],
      [{ code: "1", files: "x" }, "files"],
      [{ code: "1", files: [{ content: "no path" }] }, "files"],
      [{ code: "1", files: [{ path: "a", content: "x", encoding: "rot13" }] }, "files"],
    ];
    for (const [body, field] of executeCases) {
      const message = await expectError(400, "INVALID_REQUEST", "POST", "/api/v1/execute", { body });
      expect(message, JSON.stringify(body)).toContain(field);
    }
    for (const body of [[], "print(1)", 42, null]) {
      await expectError(400, ["INVALID_REQUEST", "INVALID_JSON"], "POST", "/api/v1/execute", { body });
    }
    const sessionCases: Array<[unknown, string]> = [
      [{ mode: "admin" }, "mode"],
      [{ kernel: 7 }, "kernel"],
      [{ startup_code: false }, "startup_code"],
      [{ env: ["A"] }, "env"],
      [{ idle_timeout_ms: "later" }, "idle_timeout_ms"],
    ];
    for (const [body, field] of sessionCases) {
      const message = await expectError(400, "INVALID_REQUEST", "POST", "/api/v1/sessions", { body });
      expect(message, JSON.stringify(body)).toContain(field);
    }
    const sessionExecute: Array<[unknown, string]> = [
      [{}, "code"],
      [{ code: 5 }, "code"],
      [{ code: "1", timeout_ms: "x" }, "timeout_ms"],
    ];
    for (const [body, field] of sessionExecute) {
      const message = await expectError(
        400,
        "INVALID_REQUEST",
        "POST",
        `/api/v1/sessions/${session.id}/execute`,
        {
          body,
        },
      );
      expect(message).toContain(field);
    }
    await expectHealthy();
  });

  it("refuses input file paths that leave the workspace", async () => {
    for (const path of ["../../etc/passwd", "/etc/passwd", "a/../../b", ""]) {
      await expectError(
        400,
        ["INVALID_REQUEST", "INVALID_FILES", "INVALID_FILE_PATH"],
        "POST",
        "/api/v1/execute",
        {
          body: { code: "1", files: [{ path, content: "x" }] },
        },
      );
    }
  });

  it("answers negative, zero or absurd limits with 400", async () => {
    const limits: Array<Record<string, unknown>> = [
      { timeout_ms: -1 },
      { timeout_ms: 0 },
      { timeout_ms: 1e12 },
      { memory_bytes: -1 },
      { memory_bytes: 2 ** 60 },
      { memory_bytes: 1024 },
      { pids: 0 },
      { pids: -5 },
      { pids: 10 ** 9 },
      { output_bytes: -1 },
      { output_bytes: 2 ** 50 },
    ];
    for (const limit of limits) {
      await expectError(400, ["INVALID_LIMIT", "INVALID_REQUEST"], "POST", "/api/v1/execute", {
        body: { code: "print(1)", ...limit },
      });
    }
    await expectError(400, "INVALID_LIMIT", "POST", "/api/v1/execute", {
      body: { code: "1", timeout_ms: 1e12 },
    });
    for (const limit of [{ timeout_ms: -1 }, { timeout_ms: 1e12 }, { memory_bytes: 2 ** 60 }, { pids: 0 }]) {
      await expectError(400, ["INVALID_LIMIT", "INVALID_REQUEST"], "POST", "/api/v1/sessions", {
        body: limit,
      });
    }
    for (const limit of [{ timeout_ms: -1 }, { timeout_ms: 0 }, { timeout_ms: 1e12 }]) {
      await expectError(
        400,
        ["INVALID_LIMIT", "INVALID_REQUEST"],
        "POST",
        `/api/v1/sessions/${session.id}/execute`,
        {
          body: { code: "1", ...limit },
        },
      );
    }
    await expectHealthy();
  });

  it("answers a body over the limit with 413 PAYLOAD_TOO_LARGE", async () => {
    const huge = JSON.stringify({ code: `# ${"x".repeat(9 * MiB)}` });
    for (const path of bodies()) {
      await expectError(413, "PAYLOAD_TOO_LARGE", "POST", path, { raw: huge });
    }
    await expectHealthy();
  });

  it("answers code over the maximum with 413 CODE_TOO_LARGE", async () => {
    const code = `# ${"x".repeat(1 * MiB)}`;
    await expectError(413, "CODE_TOO_LARGE", "POST", "/api/v1/execute", { body: { code } });
    await expectError(413, "CODE_TOO_LARGE", "POST", `/api/v1/sessions/${session.id}/execute`, {
      body: { code },
    });
    // Just under the maximum is accepted.
    const fits = await execute(server, alice, session.id, `# ${"x".repeat(MiB - 100)}\nprint('fits')`);
    expect(fits.stdout, describeExecution(fits)).toBe("fits\n");
  });

  it("answers a non-JSON body with 415 UNSUPPORTED_MEDIA_TYPE", async () => {
    for (const type of [
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ]) {
      for (const path of bodies()) {
        await expectError(415, "UNSUPPORTED_MEDIA_TYPE", "POST", path, {
          raw: '{"code": "print(1)"}',
          headers: { "content-type": type },
        });
      }
    }
    // JSON with a charset parameter is JSON.
    const ok = await request(server, "POST", "/api/v1/execute", {
      token: alice,
      raw: '{"code": "print(1)"}',
      headers: { "content-type": "application/json; charset=utf-8" },
    });
    expect(ok.status, ok.text).toBe(200);
  });

  it("answers 400 UNKNOWN_KERNEL for a kernelspec that does not exist", async () => {
    for (const kernel of ["no-such-kernel", "../python3", ""]) {
      await expectError(400, ["UNKNOWN_KERNEL", "INVALID_REQUEST"], "POST", "/api/v1/sessions", {
        body: { kernel },
      });
    }
    const message = await expectError(400, "UNKNOWN_KERNEL", "POST", "/api/v1/sessions", {
      body: { kernel: "no-such-kernel" },
    });
    expect(message).toContain("no-such-kernel");
  });

  it("answers unknown routes and ids with 404", async () => {
    await expectError(404, "NOT_FOUND", "GET", "/api/v1/no-such-route");
    await expectError(404, "NOT_FOUND", "POST", "/api/v2/execute", { body: { code: "1" } });
    await expectError(404, "NOT_FOUND", "GET", "/nothing/here", { token: null });
    for (const id of ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "..%2F..%2Fetc"]) {
      await expectError(404, "SESSION_NOT_FOUND", "GET", `/api/v1/sessions/${id}`);
      await expectError(404, "SESSION_NOT_FOUND", "POST", `/api/v1/sessions/${id}/execute`, {
        body: { code: "1" },
      });
      await expectError(404, "EXECUTION_NOT_FOUND", "GET", `/api/v1/executions/${id}`);
      await expectError(404, "EXECUTION_NOT_FOUND", "GET", `/api/v1/executions/${id}/events`);
      await expectError(404, "KERNEL_NOT_FOUND", "POST", `/api/v1/blocks/kernels/${id}/stop`);
    }
    const wrongMethod = await request(server, "PUT", "/api/v1/sessions", { token: alice, body: {} });
    expect([404, 405]).toContain(wrongMethod.status);
    await expectHealthy();
  });

  it("answers a bad events cursor with 400", async () => {
    const record = await execute(server, alice, session.id, "print('cursor')");
    for (const after of ["-1", "abc", "1.5"]) {
      await expectError(
        400,
        "INVALID_REQUEST",
        "GET",
        `/api/v1/executions/${record.id}/events?after=${after}`,
      );
    }
  });

  it("still serves normally after all of the above", async () => {
    await expectHealthy();
    const record = await execute(server, alice, session.id, "print('still fine')");
    expect(record, describeExecution(record)).toMatchObject({ status: "completed", stdout: "still fine\n" });
    const oneshot: Execution = await expectStatus(200, server, "POST", "/api/v1/execute", {
      token: alice,
      body: { code: "print('one-shot fine')" },
    });
    expect(oneshot.stdout).toBe("one-shot fine\n");
    const metrics = await request(server, "GET", "/metrics", { token: null });
    expect(metrics.text).toMatch(/runcell_http_requests_total\{[^}]*status_code="413"/);
  });
});

describe("caps", () => {
  it("answers 429 QUEUE_FULL past the per-session queue cap", async () => {
    const session = await createSession(server, alice);
    try {
      const sleeping = execute(server, alice, session.id, "import time\ntime.sleep(600)");
      await waitForSession(server, alice, session.id, (s) => s.status === "busy");
      // Two may wait behind the running one; one of three is refused at once, the others wait.
      const attempts = [1, 2, 3].map((i) =>
        request(server, "POST", `/api/v1/sessions/${session.id}/execute`, {
          token: alice,
          body: { code: `print('queued ${i}')` },
        }),
      );
      const settled: Response[] = [];
      for (const attempt of attempts) void attempt.then((response) => settled.push(response));
      await pollUntilAsync(async () => settled.length > 0, 20_000);
      expect(settled.map((r) => `${r.status} ${r.text.slice(0, 100)}`)).toHaveLength(1);
      expect(settled[0]!.status).toBe(429);
      expect(settled[0]!.json.error.code).toBe("QUEUE_FULL");
      const waiting = await expectStatus(200, server, "GET", `/api/v1/sessions/${session.id}`, {
        token: alice,
      });
      expect(waiting.queue_depth).toBe(2);
      await expectStatus(200, server, "POST", `/api/v1/sessions/${session.id}/interrupt`, { token: alice });
      const first = await sleeping;
      expect(["cancelled", "failed"]).toContain(first.status);
      // The two that waited then ran, in order.
      const ran = await Promise.all(attempts);
      expect(ran.map((r) => r.status).sort()).toEqual([200, 200, 429]);
      const outputs = ran.filter((r) => r.status === 200).map((r) => (r.json as Execution).stdout);
      expect(outputs.every((out) => /^queued [123]\n$/.test(out))).toBe(true);
    } finally {
      await request(server, "DELETE", `/api/v1/sessions/${session.id}`, { token: alice });
    }
  });

  it("refuses a one-shot that can never run at once, even while every run slot is taken", async () => {
    let settled = false;
    const holding = request(server, "POST", "/api/v1/execute", {
      token: alice,
      body: { code: "import time\ntime.sleep(8)\nprint('held')", timeout_ms: 20_000 },
    }).finally(() => (settled = true));
    // The slot is taken once a valid run is refused for capacity (a probe that got in first
    // just ran; it is tried again).
    await pollUntilAsync(async () => {
      const probe = await request(server, "POST", "/api/v1/execute", { token: alice, body: { code: "1" } });
      if (probe.status === 200) return false;
      expect(probe.json?.error?.code).toBe("AT_CAPACITY");
      return true;
    }, 20_000);
    await expectError(413, "CODE_TOO_LARGE", "POST", "/api/v1/execute", {
      body: { code: "#".repeat(2 * MiB) },
    });
    await expectError(400, "UNKNOWN_LANGUAGE", "POST", "/api/v1/execute", {
      body: { code: "1", language: "cobol" },
    });
    await expectError(400, "INVALID_LIMIT", "POST", "/api/v1/execute", {
      body: { code: "1", memory_bytes: 1024 * 1024 * MiB },
    });
    await expectError(400, "INVALID_PROFILE", "POST", "/api/v1/execute", {
      body: { code: "1", profile: "nope" },
    });
    // All four were answered while the run holding the slot was still under way.
    expect(settled).toBe(false);
    const held = await holding;
    expect(held.status).toBe(200);
    expect((held.json as Execution).stdout).toBe("held\n");
    await expectHealthy();
  });

  it("answers 429 QUOTA_EXCEEDED past the per-user cap and 503 AT_CAPACITY past the server's", async () => {
    // Sessions of the previous cases are deleted; their slots are free again.
    await expect
      .poll(
        async () =>
          (await expectStatus(200, server, "GET", "/api/v1/sessions", { token: alice })).sessions.length,
      )
      .toBe(0);
    const [a1, a2] = await Promise.all([createSession(server, alice), createSession(server, alice)]);
    await expectError(429, "QUOTA_EXCEEDED", "POST", "/api/v1/sessions", { body: {} });
    const b1 = await createSession(server, bob);
    await expectError(503, "AT_CAPACITY", "POST", "/api/v1/sessions", { token: bob, body: {} });
    // Ending a session frees its slot.
    await expectStatus(204, server, "DELETE", `/api/v1/sessions/${a1!.id}`, { token: alice });
    const a3 = await createSession(server, alice);
    expect(a3.id).not.toBe(a1!.id);
    const record = await execute(server, alice, a3.id, "print('after quota')");
    expect(record.stdout).toBe("after quota\n");
    for (const [s, token] of [
      [a2!, alice],
      [a3, alice],
      [b1, bob],
    ] as const) {
      await expectStatus(204, server, "DELETE", `/api/v1/sessions/${s.id}`, { token });
    }
    await expectHealthy();
  });
});
