/**
 * `runcell serve`: kernel sessions over HTTP. State across executes, startup code and env,
 * timeouts that keep the kernel, restart, concurrent executes serialized without mixing their
 * output, read-only and write-access workspaces, delete, and the kernels view.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pollUntil } from "../support/processes.js";
import {
  cmdlineOf,
  createSession,
  describeExecution,
  descendants,
  type Execution,
  execute,
  expectStatus,
  metricValue,
  printLoop,
  request,
  resultText,
  type Server,
  type Session,
  startServer,
  waitForPoolReady,
  waitForSession,
  NETWORK_PROBE,
} from "./server-helpers.js";

let server: Server;
let alice: string;

beforeAll(async () => {
  server = await startServer();
  alice = server.tokens.alice!;
});
afterAll(async () => {
  await server?.stop();
});

const get = (path: string) => expectStatus(200, server, "GET", path, { token: alice });

describe("a default session", () => {
  let session: Session;

  it("is created (201) from the warm pool with the documented shape", async () => {
    await waitForPoolReady(server);
    session = await createSession(server, alice);
    expect(session).toMatchObject({
      id: expect.any(String),
      kernel: "python3",
      language: "python",
      mode: "write_access",
      network: false,
      restarts: 0,
      state_lost_at: null,
      last_restart_reason: null,
      ended_at: null,
      end_reason: null,
      env_keys: [],
      from_pool: true,
      queue_depth: 0,
      execution_count: 0,
    });
    expect(["starting", "idle"]).toContain(session.status);
    expect(session.limits).toMatchObject({
      time_ms: expect.any(Number),
      memory_bytes: expect.any(Number),
      pids: expect.any(Number),
      output_bytes: expect.any(Number),
      network: false,
    });
    expect(session.kernel_id).toEqual(expect.any(String));
    expect(Number.isNaN(Date.parse(session.created_at))).toBe(false);
    const listed = await get("/api/v1/sessions");
    expect(listed.sessions.map((s: Session) => s.id)).toContain(session.id);
    expect(await get(`/api/v1/sessions/${session.id}`)).toMatchObject({
      id: session.id,
      kernel_id: session.kernel_id,
    });
  });

  it("keeps state between executes and returns full Execution records", async () => {
    const first = await execute(server, alice, session.id, "x = 20\nprint('set', x)");
    expect(first, describeExecution(first)).toMatchObject({
      session_id: session.id,
      language: "python",
      code: "x = 20\nprint('set', x)",
      status: "completed",
      stdout: "set 20\n",
      stderr: "",
      error: null,
      limit: null,
      exit_code: null,
      truncated: false,
    });
    expect(first.id).toEqual(expect.any(String));
    expect(first.finished_at).toEqual(expect.any(String));
    const second = await execute(server, alice, session.id, "x + 22");
    expect(second.status).toBe("completed");
    expect(resultText(second)).toBe("42");
    expect(second.execution_count).toBe((first.execution_count ?? 0) + 1);
    const failing = await execute(server, alice, session.id, "1/0");
    expect(failing.status).toBe("failed");
    expect(failing.error).toMatchObject({ name: "ZeroDivisionError", category: "runtime" });
    const after = await get(`/api/v1/sessions/${session.id}`);
    expect(after.status).toBe("idle");
    expect(after.execution_count).toBeGreaterThanOrEqual(3);
    expect(Date.parse(after.last_activity_at)).toBeGreaterThanOrEqual(Date.parse(session.last_activity_at));
  });

  it("serializes 10 concurrent executes; each record holds only its own output", async () => {
    const markers = Array.from({ length: 10 }, (_, i) => `marker-${i}-${"abcdefghij"[i]}`);
    const results = await Promise.all(
      markers.map((marker) => execute(server, alice, session.id, printLoop(marker, 200))),
    );
    for (const [i, execution] of results.entries()) {
      expect(execution.status, describeExecution(execution)).toBe("completed");
      expect(execution.stdout).toBe(`${markers[i]}\n`.repeat(200));
      expect(execution.stderr).toBe("");
    }
    // One at a time: ordered by start, each started after the previous one finished.
    const ordered = [...results].sort((a, b) => Date.parse(a.started_at!) - Date.parse(b.started_at!));
    for (let i = 1; i < ordered.length; i++) {
      expect(Date.parse(ordered[i]!.started_at!)).toBeGreaterThanOrEqual(
        Date.parse(ordered[i - 1]!.finished_at!),
      );
    }
    expect(new Set(results.map((e) => e.execution_count)).size).toBe(10);
    expect(new Set(results.map((e) => e.id)).size).toBe(10);
    // The stored records agree with what was returned.
    for (const execution of results.slice(0, 3)) {
      const stored: Execution = await get(`/api/v1/executions/${execution.id}`);
      expect(stored.stdout).toBe(execution.stdout);
      expect(stored.status).toBe("completed");
    }
  });

  it("answers input() from the execute's stdin lines", async () => {
    const execution = await execute(
      server,
      alice,
      session.id,
      "first = input('first? ')\nsecond = input()\nprint('got', first, second)",
      { stdin: "alpha\nbeta\n" },
    );
    expect(execution.status, describeExecution(execution)).toBe("completed");
    expect(execution.stdout).toContain("got alpha beta\n");
  });

  it("times out a busy loop with limit time and keeps the kernel's state", async () => {
    const execution = await execute(server, alice, session.id, "while True:\n    pass", { timeout_ms: 1000 });
    expect(execution, describeExecution(execution)).toMatchObject({
      status: "timed_out",
      limit: "time",
      error: { category: "timeout" },
    });
    expect(execution.limits.time_ms).toBe(1000);
    const check = await execute(server, alice, session.id, "x");
    expect(resultText(check), describeExecution(check)).toBe("20");
    const after = await get(`/api/v1/sessions/${session.id}`);
    expect(after).toMatchObject({ restarts: 0, state_lost_at: null, status: "idle" });
  });

  it("restart loses the state and says so", async () => {
    const before = await get(`/api/v1/sessions/${session.id}`);
    const restarted: Session = await expectStatus(
      200,
      server,
      "POST",
      `/api/v1/sessions/${session.id}/restart`,
      {
        token: alice,
      },
    );
    expect(restarted).toMatchObject({
      id: session.id,
      restarts: before.restarts + 1,
      last_restart_reason: "restart",
    });
    expect(restarted.state_lost_at).toEqual(expect.any(String));
    const lost = await execute(server, alice, session.id, "x");
    expect(lost.status).toBe("failed");
    expect(lost.error).toMatchObject({ name: "NameError" });
    const fresh = await execute(server, alice, session.id, "print('fresh kernel')");
    expect(fresh.stdout).toBe("fresh kernel\n");
  });

  it("delete ends the session (204); execute answers 409 and its executions stay fetchable", async () => {
    const kept = await execute(server, alice, session.id, "print('before delete')");
    await expectStatus(204, server, "DELETE", `/api/v1/sessions/${session.id}`, { token: alice });
    const ended: Session = await get(`/api/v1/sessions/${session.id}`);
    expect(ended).toMatchObject({ status: "ended", end_reason: "deleted" });
    expect(ended.ended_at).toEqual(expect.any(String));
    for (const [method, path, body] of [
      ["POST", `/api/v1/sessions/${session.id}/execute`, { code: "print(1)" }],
      ["POST", `/api/v1/sessions/${session.id}/interrupt`, undefined],
      ["POST", `/api/v1/sessions/${session.id}/restart`, undefined],
    ] as const) {
      const response = await request(server, method, path, { token: alice, body });
      expect(response.status, `${method} ${path}: ${response.text}`).toBe(409);
      expect(response.json?.error?.code).toBe("SESSION_ENDED");
    }
    expect(await get(`/api/v1/executions/${kept.id}`)).toMatchObject({
      id: kept.id,
      session_id: session.id,
      status: "completed",
      stdout: "before delete\n",
    });
    const listed = await get("/api/v1/sessions");
    expect(listed.sessions.map((s: Session) => s.id)).not.toContain(session.id);
    const kernels = await get("/api/v1/blocks/kernels");
    expect(kernels.kernels.map((k: { session_id: string }) => k.session_id)).not.toContain(session.id);
  });
});

describe("a configured session", () => {
  let session: Session;

  beforeAll(async () => {
    session = await createSession(server, alice, {
      startup_code: "import os\nGREETING = 'hello from startup'",
      env: { RC_E2E_VALUE: "value-123", RC_E2E_OTHER: "x" },
      timeout_ms: 1500,
      output_bytes: 4096,
    });
  });
  afterAll(async () => {
    if (session) await request(server, "DELETE", `/api/v1/sessions/${session.id}`, { token: alice });
  });

  it("runs startup_code before the first execute and exposes env to the kernel", async () => {
    expect(session.startup_code).toBe("import os\nGREETING = 'hello from startup'");
    expect([...session.env_keys].sort()).toEqual(["RC_E2E_OTHER", "RC_E2E_VALUE"]);
    // Values are the caller's secrets: the session names the keys only.
    expect(JSON.stringify(session)).not.toContain("value-123");
    const execution = await execute(server, alice, session.id, "print(GREETING, os.environ['RC_E2E_VALUE'])");
    expect(execution.stdout, describeExecution(execution)).toBe("hello from startup value-123\n");
  });

  it("caps each execute's output at the session's output_bytes and says how much was dropped", async () => {
    expect(session.limits.output_bytes).toBe(4096);
    const flood = await execute(server, alice, session.id, "for i in range(100000):\n    print(i)");
    expect(flood.truncated, describeExecution(flood)).toBe(true);
    expect(flood.dropped_bytes).toBeGreaterThan(500_000);
    expect(flood.stdout.length).toBeLessThan(2 * 4096);
    // Head and tail are kept.
    expect(flood.stdout.startsWith("0\n1\n2\n")).toBe(true);
    expect(flood.stdout.endsWith("99999\n")).toBe(true);
    const next = await execute(server, alice, session.id, "print('after the flood')");
    expect(next).toMatchObject({ status: "completed", stdout: "after the flood\n", truncated: false });
  });

  it("applies the session's timeout_ms to every execute that names none", async () => {
    expect(session.limits.time_ms).toBe(1500);
    const quick = await execute(server, alice, session.id, "kept = 7");
    expect(quick.limits.time_ms).toBe(1500);
    const slow = await execute(server, alice, session.id, "import time\ntime.sleep(60)");
    expect(slow, describeExecution(slow)).toMatchObject({ status: "timed_out", limit: "time" });
    const check = await execute(server, alice, session.id, "kept * 6");
    expect(resultText(check), describeExecution(check)).toBe("42");
  });
});

describe("hostile code in a session", () => {
  let session: Session;
  const MiB = 1024 * 1024;

  beforeAll(async () => {
    session = await createSession(server, alice, { memory_bytes: 512 * MiB, pids: 32 });
  });
  afterAll(async () => {
    if (session) await request(server, "DELETE", `/api/v1/sessions/${session.id}`, { token: alice });
  });

  /** Processes of this session's kernel: every one has the kernel id in its argv (forks included). */
  const kernelProcesses = () =>
    descendants(server.pid).filter((pid) => cmdlineOf(pid).includes(session.kernel_id!));

  it("a memory bomb kills the kernel at its memory limit; the session goes on with a fresh one", async () => {
    expect(session.limits).toMatchObject({ memory_bytes: 512 * MiB, pids: 32 });
    await execute(server, alice, session.id, "before_bomb = 1");
    const bomb = await execute(
      server,
      alice,
      session.id,
      "x = []\nwhile True:\n    x.append(bytearray(10**7))",
    );
    expect(bomb, describeExecution(bomb)).toMatchObject({ status: "failed", limit: "memory" });
    expect(["memory", "kernel_died"]).toContain(bomb.error?.category);
    const after = await waitForSession(
      server,
      alice,
      session.id,
      (s) => s.restarts === 1 && s.status === "idle",
    );
    expect(after.last_restart_reason).toBe("died");
    const check = await execute(server, alice, session.id, "print('alive')");
    expect(check.stdout, describeExecution(check)).toBe("alive\n");
  });

  it("a fork bomb is held at the pids cap and ended at the time limit; no fork survives", async () => {
    const before = kernelProcesses().length;
    expect(before).toBeGreaterThan(0);
    const bomb = await execute(
      server,
      alice,
      session.id,
      "import os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass",
      { timeout_ms: 2000 },
    );
    expect(bomb, describeExecution(bomb)).toMatchObject({ status: "timed_out", limit: "time" });
    // The forks ignore the interrupt, so the kernel was replaced (state lost, said so).
    const after = await waitForSession(
      server,
      alice,
      session.id,
      (s) => s.restarts === 2 && s.status === "idle",
    );
    expect(after.last_restart_reason).toBe("timeout");
    const check = await execute(server, alice, session.id, "print('alive')");
    expect(check.stdout, describeExecution(check)).toBe("alive\n");
    expect(await pollUntil(() => kernelProcesses().length <= before, 15_000)).toBe(true);
  });
});

describe("workspace modes", () => {
  let readOnly: Session;
  let writable: Session;

  beforeAll(async () => {
    [readOnly, writable] = await Promise.all([
      createSession(server, alice, { mode: "read_only" }),
      createSession(server, alice, { mode: "write_access" }),
    ]);
  });
  afterAll(async () => {
    for (const s of [readOnly, writable]) {
      if (s) await request(server, "DELETE", `/api/v1/sessions/${s.id}`, { token: alice });
    }
  });

  const writeProbe =
    "open('/workspace/probe.txt', 'w').write('written')\nprint(open('/workspace/probe.txt').read())";

  it("write_access can write /workspace", async () => {
    expect(writable.mode).toBe("write_access");
    const execution = await execute(server, alice, writable.id, writeProbe);
    expect(execution, describeExecution(execution)).toMatchObject({
      status: "completed",
      stdout: "written\n",
    });
    const cwd = await execute(server, alice, writable.id, "import os\nprint(os.getcwd())");
    expect(cwd.stdout).toBe("/workspace\n");
  });

  it("read_only cannot write /workspace and has no network", async () => {
    expect(readOnly).toMatchObject({ mode: "read_only", network: false });
    const write = await execute(server, alice, readOnly.id, writeProbe);
    expect(write.status, describeExecution(write)).toBe("failed");
    expect(write.error!.name).toMatch(/OSError|PermissionError/);
    expect(write.error!.value).toMatch(/Read-only file system|Permission denied/);
    const network = await execute(server, alice, readOnly.id, NETWORK_PROBE);
    expect(network.status, describeExecution(network)).toBe("completed");
    expect(network.stdout).toMatch(/^blocked /);
  });

  it("write_access has no network unless asked", async () => {
    expect(writable.network).toBe(false);
    const network = await execute(server, alice, writable.id, NETWORK_PROBE);
    expect(network.stdout, describeExecution(network)).toMatch(/^blocked /);
  });

  it("refuses network on a read_only session with 400", async () => {
    const response = await request(server, "POST", "/api/v1/sessions", {
      token: alice,
      body: { mode: "read_only", network: true },
    });
    expect(response.status, response.text).toBe(400);
    expect(response.json?.error?.code).toBe("INVALID_REQUEST");
  });

  it("lists session kernels; stopping one ends its session with kernel_stopped", async () => {
    const { kernels } = await get("/api/v1/blocks/kernels");
    const entry = kernels.find((k: { session_id: string }) => k.session_id === readOnly.id);
    expect(entry).toMatchObject({
      kernel_id: readOnly.kernel_id,
      session_id: readOnly.id,
      name: "python3",
      status: expect.any(String),
      started_at: expect.any(String),
      last_activity_at: expect.any(String),
    });
    const stopped = await expectStatus(
      200,
      server,
      "POST",
      `/api/v1/blocks/kernels/${entry.kernel_id}/stop`,
      {
        token: alice,
      },
    );
    expect(stopped).toMatchObject({ kernel_id: entry.kernel_id, stopped: true });
    const ended = await waitForSession(server, alice, readOnly.id, (s) => s.status === "ended");
    expect(ended).toMatchObject({ status: "ended", end_reason: "kernel_stopped" });
    const refused = await request(server, "POST", `/api/v1/sessions/${readOnly.id}/execute`, {
      token: alice,
      body: { code: "1" },
    });
    expect(refused.status).toBe(409);
    expect(refused.json?.error?.code).toBe("SESSION_ENDED");
    const after = await get("/api/v1/blocks/kernels");
    expect(after.kernels.map((k: { kernel_id: string }) => k.kernel_id)).not.toContain(entry.kernel_id);
    // The other session is untouched.
    expect((await execute(server, alice, writable.id, "print('still here')")).stdout).toBe("still here\n");
  });

  it("counts session executions and live sessions in /metrics", async () => {
    const text = (await request(server, "GET", "/metrics", { token: null })).text;
    const session = { kind: "session" };
    expect(
      metricValue(text, "runcell_executions_total", { ...session, status: "completed" }),
    ).toBeGreaterThanOrEqual(20);
    expect(
      metricValue(text, "runcell_executions_total", { ...session, status: "timed_out" }),
    ).toBeGreaterThanOrEqual(2);
    expect(
      metricValue(text, "runcell_executions_total", { ...session, status: "failed" }),
    ).toBeGreaterThanOrEqual(3);
    expect(metricValue(text, "runcell_execution_duration_seconds_count", session)).toBe(
      metricValue(text, "runcell_executions_total", session),
    );
    // Only the write_access session is still live.
    expect(metricValue(text, "runcell_sessions_active")).toBe(1);
    expect(metricValue(text, "runcell_kernels_alive")).toBeGreaterThanOrEqual(1);
  });
});
