/**
 * `runcell serve` over its lifetime: idle sessions are culled, SIGTERM stops every kernel and
 * exits 0, what was stored survives a restart on the same data dir, and a SIGKILLed server
 * leaves no kernel behind.
 */
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isProcessAlive, pollUntil } from "../support/processes.js";
import {
  cmdlineOf,
  createSession,
  describeExecution,
  type Execution,
  execute,
  expectStatus,
  kernelPids,
  openWs,
  pollUntilAsync,
  request,
  type Server,
  type Session,
  startServer,
  waitForSession,
} from "./server-helpers.js";

describe("idle culling", () => {
  let server: Server;
  let alice: string;

  beforeAll(async () => {
    server = await startServer({ env: { RUNCELL_SESSIONS_IDLE_TIMEOUT_MS: "1000" }, poolSize: 0 });
    alice = server.tokens.alice!;
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("ends an idle session with end_reason culled and stops its kernel", async () => {
    const session = await createSession(server, alice);
    const ws = await openWs(server, `/api/v1/sessions/${session.id}/ws?token=${encodeURIComponent(alice)}`);
    // A run longer than the idle timeout is activity, not idleness.
    const pending = execute(server, alice, session.id, "import time\ntime.sleep(2)\nprint('not culled')");
    await waitForSession(server, alice, session.id, (s) => s.status === "busy");
    const kernelsBefore = kernelPids(server);
    expect(kernelsBefore.length).toBeGreaterThan(0);
    const long = await pending;
    expect(long, describeExecution(long)).toMatchObject({ status: "completed", stdout: "not culled\n" });

    const notice = await ws.next((f) => f.type === "session" && f.status === "ended");
    expect(notice).toMatchObject({ session_id: session.id, reason: "culled" });
    // The first view of the ended session already says why and when (soft: the cleanup checks still run).
    const ended: Session = await waitForSession(server, alice, session.id, (s) => s.status === "ended");
    expect
      .soft(ended, "first GET showing status ended")
      .toMatchObject({ status: "ended", end_reason: "culled" });
    expect.soft(ended.ended_at, "ended_at of that GET").toEqual(expect.any(String));
    await ws.closed;
    expect(await pollUntil(() => kernelsBefore.every((pid) => !isProcessAlive(pid)), 15_000)).toBe(true);

    const refused = await request(server, "POST", `/api/v1/sessions/${session.id}/execute`, {
      token: alice,
      body: { code: "1" },
    });
    expect(refused.status).toBe(409);
    expect(refused.json?.error?.code).toBe("SESSION_ENDED");
    expect(
      await expectStatus(200, server, "GET", `/api/v1/executions/${long.id}`, { token: alice }),
    ).toMatchObject({ stdout: "not culled\n" });
    const listed = await expectStatus(200, server, "GET", "/api/v1/sessions", { token: alice });
    expect(listed.sessions).toEqual([]);
  });

  it("takes a per-session idle_timeout_ms over the server's", async () => {
    const session = await createSession(server, alice, { idle_timeout_ms: 600_000 });
    expect(session).toMatchObject({ idle_timeout_ms: 600_000 });
    const other = await createSession(server, alice);
    await waitForSession(server, alice, other.id, (s) => s.status === "ended");
    const kept = await expectStatus(200, server, "GET", `/api/v1/sessions/${session.id}`, { token: alice });
    expect(kept.status).toBe("idle");
  });
});

describe("stopping the server", () => {
  let server: Server | undefined;
  let restarted: Server | undefined;

  afterAll(async () => {
    await restarted?.stop();
    await server?.stop();
    // The first server kept its dir for the restart; gone already unless the test stopped early.
    if (server) rmSync(server.root, { recursive: true, force: true });
  });

  it("SIGTERM stops every kernel and exits 0; a restart on the same data dir keeps what was stored", async () => {
    server = await startServer({ env: { RUNCELL_SHUTDOWN_GRACE_MS: "2000" } });
    const alice = server.tokens.alice!;
    const [busy, idle] = await Promise.all([createSession(server, alice), createSession(server, alice)]);
    const done = await execute(server, alice, idle.id, "print('stored before shutdown')");
    const oneshot: Execution = await expectStatus(200, server, "POST", "/api/v1/execute", {
      token: alice,
      body: { code: "print('one-shot before shutdown')" },
    });
    // An execution still running when the signal comes.
    const running = request(server, "POST", `/api/v1/sessions/${busy.id}/execute`, {
      token: alice,
      body: { code: "import time\ntime.sleep(600)" },
    }).catch(() => undefined);
    await waitForSession(server, alice, busy.id, (s) => s.status === "busy");
    const kernels = kernelPids(server);
    expect(kernels.length, "kernels of two sessions and the pool").toBeGreaterThanOrEqual(2);

    // During the grace period running work may finish, new work is refused with 503.
    server.signal("SIGTERM");
    const closing = await pollUntilAsync(async () => {
      const health = await request(server!, "GET", "/healthz", { token: null }).catch(() => undefined);
      return health?.json?.status === "shutting_down";
    }, 10_000);
    expect(closing, "healthz says shutting_down during the grace period").toBe(true);
    for (const [path, body] of [
      ["/api/v1/sessions", {}],
      [`/api/v1/sessions/${idle.id}/execute`, { code: "1" }],
      ["/api/v1/execute", { code: "1" }],
    ] as const) {
      const refused = await request(server, "POST", path, { token: alice, body });
      expect(refused.status, `${path}: ${refused.text}`).toBe(503);
      expect(refused.json?.error?.code).toBe("SHUTTING_DOWN");
    }

    const result = await server.stop("SIGTERM", { keepDir: true });
    expect(result.signal, server.stderr()).toBeNull();
    expect(result.code, server.stderr()).toBe(0);
    expect(result.kernelsBefore).toBeGreaterThanOrEqual(2);
    expect(result.survivors).toEqual([]);
    for (const pid of kernels) expect(isProcessAlive(pid), cmdlineOf(pid)).toBe(false);
    // The in-flight request was answered or cut, not left hanging.
    const answer = await running;
    if (answer) expect(answer.status).not.toBe(500);

    restarted = await startServer({
      reuse: { root: server.root, dataDir: server.dataDir, runtimeDir: server.runtimeDir },
      users: [],
    });
    // Tokens are stored: alice's still works.
    const stored = await expectStatus(200, restarted, "GET", `/api/v1/executions/${done.id}`, {
      token: alice,
    });
    expect(stored).toMatchObject({ id: done.id, status: "completed", stdout: "stored before shutdown\n" });
    expect(
      await expectStatus(200, restarted, "GET", `/api/v1/executions/${oneshot.id}`, { token: alice }),
    ).toMatchObject({ stdout: "one-shot before shutdown\n" });
    for (const id of [busy.id, idle.id]) {
      const session: Session = await expectStatus(200, restarted, "GET", `/api/v1/sessions/${id}`, {
        token: alice,
      });
      expect(session.status).toBe("ended");
      expect(["server_shutdown", "server_restarted"]).toContain(session.end_reason);
    }
    // The execution cut by the shutdown is stored as finished, not as running forever.
    if (answer?.status === 200) {
      const cut = await expectStatus(200, restarted, "GET", `/api/v1/executions/${answer.json.id}`, {
        token: alice,
      });
      expect(["cancelled", "failed"]).toContain(cut.status);
    }
    const listed = await expectStatus(200, restarted, "GET", "/api/v1/sessions", { token: alice });
    expect(listed.sessions).toEqual([]);
    // The data dir was not empty: no second admin token.
    expect(restarted.adminToken).toBeUndefined();
  });

  it("a second SIGTERM during the grace period exits at once (143) and still leaves no kernel", async () => {
    const impatient = await startServer({ env: { RUNCELL_SHUTDOWN_GRACE_MS: "60000" }, poolSize: 0 });
    try {
      const alice = impatient.tokens.alice!;
      const session = await createSession(impatient, alice);
      const running = request(impatient, "POST", `/api/v1/sessions/${session.id}/execute`, {
        token: alice,
        body: { code: "import time\ntime.sleep(600)" },
      }).catch(() => undefined);
      await waitForSession(impatient, alice, session.id, (s) => s.status === "busy");
      expect(kernelPids(impatient).length).toBeGreaterThanOrEqual(1);
      impatient.signal("SIGTERM");
      const closing = await pollUntilAsync(async () => {
        const health = await request(impatient, "GET", "/healthz", { token: null }).catch(() => undefined);
        return health?.json?.status === "shutting_down";
      }, 10_000);
      expect(closing).toBe(true);
      impatient.proc.kill("SIGTERM");
      const result = await impatient.stop();
      expect(result.code).toBe(143);
      expect(result.survivors).toEqual([]);
      await running;
    } finally {
      await impatient.stop("SIGKILL");
    }
  });

  it("SIGKILL of the server leaves no kernel behind", async () => {
    const target = restarted ?? (await startServer());
    restarted = target;
    const alice = target.tokens.alice ?? (await target.createToken("alice"));
    const session = await createSession(target, alice);
    const running = request(target, "POST", `/api/v1/sessions/${session.id}/execute`, {
      token: alice,
      body: { code: "import time\ntime.sleep(600)" },
    }).catch(() => undefined);
    await waitForSession(target, alice, session.id, (s) => s.status === "busy");
    const kernels = kernelPids(target);
    expect(kernels.length).toBeGreaterThanOrEqual(1);
    // Their argv names the runtime dir, which `stop` also searches for survivors outside the tree.
    for (const pid of kernels) expect(cmdlineOf(pid)).toContain(target.runtimeDir);

    const result = await target.stop("SIGKILL");
    expect(result.signal).toBe("SIGKILL");
    expect(result.survivors).toEqual([]);
    for (const pid of kernels) expect(isProcessAlive(pid), cmdlineOf(pid)).toBe(false);
    await running;
  });
});
