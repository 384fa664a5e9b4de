/**
 * `runcell serve`: who may call what. Bearer tokens (header or ?token=), tokens created while
 * the server runs, another user's resources answered exactly like unknown ones, the public
 * routes (health, metrics, OpenAPI, docs) and the request id on every answer.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createSession,
  execute,
  expectStatus,
  openWs,
  request,
  type Server,
  type Session,
  startServer,
} from "./server-helpers.js";

let server: Server;
let alice: string;
let bob: string;

beforeAll(async () => {
  server = await startServer();
  alice = server.tokens.alice!;
  bob = server.tokens.bob!;
});
afterAll(async () => {
  await server?.stop();
});

describe("authentication", () => {
  const protectedRoutes: Array<[string, string, unknown?]> = [
    ["GET", "/api/v1/sessions"],
    ["POST", "/api/v1/sessions", {}],
    ["GET", "/api/v1/sessions/00000000-0000-0000-0000-000000000000"],
    ["POST", "/api/v1/execute", { code: "print(1)" }],
    ["GET", "/api/v1/kernelspecs"],
    ["GET", "/api/v1/executions/00000000-0000-0000-0000-000000000000"],
    ["GET", "/api/v1/blocks/kernels"],
  ];

  it("answers 401 UNAUTHORIZED without a token, whatever the route", async () => {
    for (const [method, path, body] of protectedRoutes) {
      const response = await request(server, method, path, { token: null, body });
      expect(response.status, `${method} ${path}`).toBe(401);
      expect(response.json?.error?.code, `${method} ${path}`).toBe("UNAUTHORIZED");
      expect(response.json.error.message).toEqual(expect.any(String));
    }
  });

  it("answers 401 to a wrong, malformed or differently-schemed token", async () => {
    const attempts: Array<Record<string, string>> = [
      { authorization: "Bearer rc_not-a-real-token" },
      { authorization: `Bearer ${alice}x` },
      { authorization: "Bearer " },
      { authorization: `Basic ${Buffer.from(`alice:${alice}`).toString("base64")}` },
      { authorization: alice },
    ];
    for (const headers of attempts) {
      const response = await request(server, "GET", "/api/v1/sessions", { token: null, headers });
      expect(response.status, JSON.stringify(headers)).toBe(401);
      expect(response.json?.error?.code).toBe("UNAUTHORIZED");
    }
    const badQuery = await request(server, "GET", "/api/v1/sessions?token=rc_wrong", { token: null });
    expect(badQuery.status).toBe(401);
  });

  it("accepts the token in the Authorization header or in ?token=", async () => {
    expect(await expectStatus(200, server, "GET", "/api/v1/sessions", { token: alice })).toEqual({
      sessions: expect.any(Array),
    });
    const byQuery = await request(server, "GET", `/api/v1/sessions?token=${encodeURIComponent(alice)}`);
    expect(byQuery.status).toBe(200);
    expect(byQuery.json.sessions).toEqual(expect.any(Array));
  });

  it("prints an admin token on an empty data dir, and it works", async () => {
    expect(server.adminToken).toMatch(/^rc_/);
    expect(server.stderr()).toContain(`${server.url}/?token=${server.adminToken}`);
    await expectStatus(200, server, "GET", "/api/v1/sessions", { token: server.adminToken });
  });

  it("accepts a token created by `runcell token create` while the server runs, at once", async () => {
    const carol = await server.createToken("carol");
    expect(carol).not.toBe(alice);
    const response = await request(server, "GET", "/api/v1/sessions", { token: carol });
    expect(response.status, response.text).toBe(200);
    expect(response.json.sessions).toEqual([]);
  });
});

describe("ownership", () => {
  let session: Session;
  let executionId: string;

  beforeAll(async () => {
    session = await createSession(server, alice);
    const execution = await execute(server, alice, session.id, "secret = 'alice only'\nprint(secret)");
    expect(execution.stdout).toBe("alice only\n");
    executionId = execution.id;
  });

  it("answers 404 SESSION_NOT_FOUND to another user on every session route, as for an unknown id", async () => {
    const unknown = "00000000-0000-0000-0000-000000000000";
    for (const id of [session.id, unknown]) {
      const routes: Array<[string, string, unknown?]> = [
        ["GET", `/api/v1/sessions/${id}`],
        ["POST", `/api/v1/sessions/${id}/execute`, { code: "print(secret)" }],
        ["POST", `/api/v1/sessions/${id}/interrupt`],
        ["POST", `/api/v1/sessions/${id}/restart`],
        ["DELETE", `/api/v1/sessions/${id}`],
      ];
      for (const [method, path, body] of routes) {
        const response = await request(server, method, path, { token: bob, body });
        expect(response.status, `${method} ${path}: ${response.text}`).toBe(404);
        expect(response.json?.error?.code, `${method} ${path}`).toBe("SESSION_NOT_FOUND");
      }
    }
    // Bob's attempts changed nothing: the session, its kernel and its state are alice's still.
    const after = await expectStatus(200, server, "GET", `/api/v1/sessions/${session.id}`, { token: alice });
    expect(after).toMatchObject({ status: "idle", restarts: 0, ended_at: null });
    expect((await execute(server, alice, session.id, "print(secret)")).stdout).toBe("alice only\n");
  });

  it("opens the owner's WebSocket with the token in the header or in ?token=", async () => {
    for (const ws of [
      await openWs(server, `/api/v1/sessions/${session.id}/ws`, alice),
      await openWs(server, `/api/v1/sessions/${session.id}/ws?token=${encodeURIComponent(alice)}`),
    ]) {
      ws.send({ type: "ping" });
      expect(await ws.next((f) => f.type === "pong")).toMatchObject({ type: "pong" });
      await ws.close();
    }
  });

  it("refuses another user's WebSocket upgrade with 404", async () => {
    const attempt = openWs(server, `/api/v1/sessions/${session.id}/ws?token=${encodeURIComponent(bob)}`);
    await expect(attempt).rejects.toMatchObject({ status: 404 });
    const anonymous = openWs(server, `/api/v1/sessions/${session.id}/ws`);
    await expect(anonymous).rejects.toMatchObject({ status: 401 });
  });

  it("answers 404 EXECUTION_NOT_FOUND to another user's execution and its events", async () => {
    for (const path of [`/api/v1/executions/${executionId}`, `/api/v1/executions/${executionId}/events`]) {
      const response = await request(server, "GET", path, { token: bob });
      expect(response.status, path).toBe(404);
      expect(response.json?.error?.code).toBe("EXECUTION_NOT_FOUND");
      expect(response.text).not.toContain("alice only");
    }
    const own = await expectStatus(200, server, "GET", `/api/v1/executions/${executionId}`, { token: alice });
    expect(own).toMatchObject({ id: executionId, session_id: session.id, stdout: "alice only\n" });
  });

  it("lists only the caller's own sessions and kernels", async () => {
    const bobs = await createSession(server, bob);
    try {
      const aliceList = await expectStatus(200, server, "GET", "/api/v1/sessions", { token: alice });
      const bobList = await expectStatus(200, server, "GET", "/api/v1/sessions", { token: bob });
      expect(aliceList.sessions.map((s: Session) => s.id)).toContain(session.id);
      expect(aliceList.sessions.map((s: Session) => s.id)).not.toContain(bobs.id);
      expect(bobList.sessions.map((s: Session) => s.id)).toEqual([bobs.id]);

      const aliceKernels = await expectStatus(200, server, "GET", "/api/v1/blocks/kernels", { token: alice });
      const bobKernels = await expectStatus(200, server, "GET", "/api/v1/blocks/kernels", { token: bob });
      const sessionsOf = (list: { kernels: Array<{ session_id: string }> }) =>
        list.kernels.map((k) => k.session_id);
      expect(sessionsOf(aliceKernels)).toContain(session.id);
      expect(sessionsOf(aliceKernels)).not.toContain(bobs.id);
      expect(sessionsOf(bobKernels)).toEqual([bobs.id]);

      // Bob cannot stop alice's kernel either.
      const stop = await request(server, "POST", `/api/v1/blocks/kernels/${session.kernel_id}/stop`, {
        token: bob,
      });
      expect(stop.status).toBe(404);
      expect(stop.json?.error?.code).toBe("KERNEL_NOT_FOUND");
    } finally {
      await expectStatus(204, server, "DELETE", `/api/v1/sessions/${bobs.id}`, { token: bob });
    }
    const after = await expectStatus(200, server, "GET", `/api/v1/sessions/${session.id}`, { token: alice });
    expect(after.status).toBe("idle");
  });
});

describe("public routes", () => {
  it("GET /healthz answers without a token", async () => {
    const health = await expectStatus(200, server, "GET", "/healthz", { token: null });
    expect(health).toMatchObject({
      status: "ok",
      version: "0.1.0",
      uptime_s: expect.any(Number),
      sessions: expect.any(Number),
      kernels_alive: expect.any(Number),
      pool: expect.any(Object),
    });
  });

  it("GET /api/v1/openapi.json is an OpenAPI 3.1 document listing every route", async () => {
    const response = await request(server, "GET", "/api/v1/openapi.json", { token: null });
    expect(response.status).toBe(200);
    expect(response.headers["content-type"]).toMatch(/application\/json/);
    const doc = response.json;
    expect(doc.openapi).toMatch(/^3\.1\./);
    expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    const paths = Object.keys(doc.paths);
    const routes: Array<[string, string]> = [
      ["/api/v1/execute", "post"],
      ["/api/v1/kernelspecs", "get"],
      ["/api/v1/sessions", "post"],
      ["/api/v1/sessions", "get"],
      ["/api/v1/sessions/{id}", "get"],
      ["/api/v1/sessions/{id}", "delete"],
      ["/api/v1/sessions/{id}/execute", "post"],
      ["/api/v1/sessions/{id}/interrupt", "post"],
      ["/api/v1/sessions/{id}/restart", "post"],
      ["/api/v1/sessions/{id}/ws", "get"],
      ["/api/v1/executions/{id}", "get"],
      ["/api/v1/executions/{id}/events", "get"],
      ["/api/v1/blocks/kernels", "get"],
      ["/api/v1/blocks/kernels/{kernel_id}/stop", "post"],
    ];
    // Path parameter names are the server's choice: compare with every {name} normalised.
    const normalise = (path: string) => path.replace(/\{[^}]+\}/g, "{}");
    const byShape = new Map(paths.map((path) => [normalise(path), doc.paths[path]]));
    for (const [path, method] of routes) {
      const item = byShape.get(normalise(path));
      expect(item, `${path} missing from ${paths.join(", ")}`).toBeDefined();
      expect(item[method], `${method.toUpperCase()} ${path}`).toBeDefined();
      expect(item[method].responses, `${method.toUpperCase()} ${path} responses`).toBeDefined();
    }
    // Bearer auth is declared.
    const schemes = Object.values(doc.components?.securitySchemes ?? {}) as Array<Record<string, string>>;
    expect(
      schemes.some((scheme) => scheme.type === "http" && scheme.scheme?.toLowerCase() === "bearer"),
    ).toBe(true);
  });

  it("GET /api/v1/docs serves an HTML reference", async () => {
    const response = await request(server, "GET", "/api/v1/docs", { token: null });
    expect(response.status).toBe(200);
    expect(response.headers["content-type"]).toMatch(/text\/html/);
    expect(response.text).toMatch(/<html/i);
  });

  it("GET /api/v1/kernelspecs names python3 as the default", async () => {
    const specs = await expectStatus(200, server, "GET", "/api/v1/kernelspecs", { token: alice });
    expect(specs.default).toBe("python3");
    expect(specs.kernelspecs.python3).toMatchObject({
      name: "python3",
      display_name: expect.any(String),
      language: "python",
    });
  });

  it("sends an x-request-id header on every answer, errors included", async () => {
    const cases: Array<[string, string, string | null, number]> = [
      ["GET", "/healthz", null, 200],
      ["GET", "/metrics", null, 200],
      ["GET", "/api/v1/sessions", alice, 200],
      ["GET", "/api/v1/sessions", null, 401],
      ["GET", "/api/v1/no-such-route", alice, 404],
      ["GET", "/api/v1/sessions/00000000-0000-0000-0000-000000000000", alice, 404],
    ];
    const seen = new Set<string>();
    for (const [method, path, token, status] of cases) {
      const response = await request(server, method, path, { token });
      expect(response.status, `${method} ${path}`).toBe(status);
      const id = response.headers["x-request-id"];
      expect(id, `${method} ${path}`).toEqual(expect.any(String));
      expect((id as string).length).toBeGreaterThan(0);
      seen.add(id as string);
    }
    expect(seen.size).toBe(cases.length);
  });
});
