/**
 * `runcell serve`: one-shot runs (POST /api/v1/execute) in each language, with input files and
 * env, under hostile code (time, memory, fork bomb, network), and the metrics they move.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  describeExecution,
  type Execution,
  expectStatus,
  metricValue,
  request,
  type Server,
  startServer,
  NETWORK_PROBE,
} from "./server-helpers.js";

let server: Server;
let alice: string;
let metricsBefore: string;

const MiB = 1024 * 1024;

beforeAll(async () => {
  server = await startServer();
  alice = server.tokens.alice!;
  metricsBefore = (await request(server, "GET", "/metrics", { token: null })).text;
});
afterAll(async () => {
  await server?.stop();
});

const run = (body: Record<string, unknown>): Promise<Execution> =>
  expectStatus(200, server, "POST", "/api/v1/execute", { token: alice, body });

describe("POST /api/v1/execute", () => {
  it("runs python by default and returns one Execution record", async () => {
    const record = await run({ code: "import sys\nprint(6 * 7)\nsys.stderr.write('warn\\n')" });
    expect(record, describeExecution(record)).toMatchObject({
      language: "python",
      status: "completed",
      stdout: "42\n",
      stderr: "warn\n",
      exit_code: 0,
      error: null,
      limit: null,
      session_id: null,
      truncated: false,
      limits: { network: false, time_ms: expect.any(Number) },
    });
    expect(record.id).toEqual(expect.any(String));
    expect(record.duration_ms).toBeGreaterThan(0);
    // One-shot records are stored like session ones.
    const stored = await expectStatus(200, server, "GET", `/api/v1/executions/${record.id}`, {
      token: alice,
    });
    expect(stored).toMatchObject({ id: record.id, stdout: "42\n", status: "completed" });
  });

  it("runs bash and node", async () => {
    const bash = await run({ language: "bash", code: "echo bash $((6 * 7)); exit 0" });
    expect(bash, describeExecution(bash)).toMatchObject({
      language: "bash",
      status: "completed",
      stdout: "bash 42\n",
    });
    const node = await run({ language: "node", code: "console.log('node', 6 * 7)" });
    expect(node, describeExecution(node)).toMatchObject({
      language: "node",
      status: "completed",
      stdout: "node 42\n",
    });
  });

  it("reports the program's own exit code and Python errors by category", async () => {
    const exit3 = await run({ language: "bash", code: "echo out; exit 3" });
    expect(exit3).toMatchObject({ exit_code: 3, stdout: "out\n", status: "failed" });
    const syntax = await run({ code: "def f(:" });
    expect(syntax).toMatchObject({ status: "failed", error: { name: "SyntaxError", category: "syntax" } });
  });

  it("places input files in the workspace and passes env", async () => {
    const record = await run({
      code: [
        "import os",
        "print(open('data/in.txt').read(), open('blob.bin', 'rb').read(), os.environ['RC_GREETING'], os.getcwd())",
      ].join("\n"),
      files: [
        { path: "data/in.txt", content: "text file" },
        { path: "blob.bin", content: Buffer.from([0, 1, 2]).toString("base64"), encoding: "base64" },
      ],
      env: { RC_GREETING: "hello-env" },
    });
    expect(record.stdout, describeExecution(record)).toBe(
      "text file b'\\x00\\x01\\x02' hello-env /workspace\n",
    );
  });

  it("answers 400 UNKNOWN_LANGUAGE for a language it does not run", async () => {
    for (const language of ["ruby", "", "--dev-bind / /"]) {
      const response = await request(server, "POST", "/api/v1/execute", {
        token: alice,
        body: { language, code: "puts 1" },
      });
      expect(response.status, `${language}: ${response.text}`).toBe(400);
      expect(["UNKNOWN_LANGUAGE", "INVALID_REQUEST"]).toContain(response.json?.error?.code);
    }
    const ruby = await request(server, "POST", "/api/v1/execute", {
      token: alice,
      body: { language: "ruby", code: "puts 1" },
    });
    expect(ruby.json.error.code).toBe("UNKNOWN_LANGUAGE");
    expect(ruby.json.error.message).toMatch(/python/);
  });

  it("ends a busy loop at the time limit: timed_out, limit time", async () => {
    const record = await run({ code: "while True:\n    pass", timeout_ms: 1000 });
    expect(record, describeExecution(record)).toMatchObject({
      status: "timed_out",
      limit: "time",
      error: { category: "timeout" },
      limits: { time_ms: 1000 },
    });
  });

  it("ends a memory bomb at the memory limit: failed, limit memory", async () => {
    const record = await run({
      code: "x = []\nwhile True:\n    x.append(bytearray(10**7))",
      memory_bytes: 64 * MiB,
      timeout_ms: 20_000,
    });
    expect(record, describeExecution(record)).toMatchObject({
      status: "failed",
      limit: "memory",
      error: { category: "memory" },
      limits: { memory_bytes: 64 * MiB },
    });
  });

  it("bounds a fork bomb and cleans it up; the server keeps serving", async () => {
    const record = await run({
      code: "import os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass",
      pids: 32,
      timeout_ms: 2000,
    });
    expect(["timed_out", "failed"], describeExecution(record)).toContain(record.status);
    expect(["time", "pids"]).toContain(record.limit);
    expect(record.limits.pids).toBe(32);
    const next = await run({ language: "bash", code: "echo usable" });
    expect(next).toMatchObject({ status: "completed", stdout: "usable\n" });
    expect(await expectStatus(200, server, "GET", "/healthz", { token: null })).toMatchObject({
      status: "ok",
    });
  });

  it("blocks the network unless asked", async () => {
    const record = await run({
      code: NETWORK_PROBE,
    });
    expect(record.stdout, describeExecution(record)).toMatch(/^blocked /);
    expect(record.limits.network).toBe(false);
  });

  it("runs concurrent one-shots independently", async () => {
    const records = await Promise.all(
      [0, 1, 2, 3].map((i) => run({ code: `for _ in range(100):\n    print('run-${i}')` })),
    );
    for (const [i, record] of records.entries()) {
      expect(record.stdout, describeExecution(record)).toBe(`run-${i}\n`.repeat(100));
    }
    expect(new Set(records.map((r) => r.id)).size).toBe(4);
  });
});

describe("GET /metrics", () => {
  it("exposes runcell_ metrics whose counts moved with the runs above", async () => {
    const response = await request(server, "GET", "/metrics", { token: null });
    expect(response.status).toBe(200);
    expect(response.headers["content-type"]).toMatch(/^text\/plain/);
    const text = response.text;
    for (const name of [
      "runcell_executions_total",
      "runcell_execution_duration_seconds",
      "runcell_kernels_alive",
      "runcell_pool_kernels",
      "runcell_sessions_active",
      "runcell_queue_depth",
      "runcell_http_requests_total",
      "runcell_http_request_duration_seconds",
    ]) {
      expect(text, name).toMatch(new RegExp(`^# TYPE ${name} `, "m"));
    }
    const oneshot = { kind: "oneshot" };
    const before = metricValue(metricsBefore, "runcell_executions_total", oneshot);
    const after = metricValue(text, "runcell_executions_total", oneshot);
    // At least the runs of this file that reached a runner (400s did not).
    expect(after - before).toBeGreaterThanOrEqual(14);
    const timedOut = { ...oneshot, status: "timed_out", language: "python" };
    expect(
      metricValue(text, "runcell_executions_total", timedOut) -
        metricValue(metricsBefore, "runcell_executions_total", timedOut),
    ).toBeGreaterThanOrEqual(1);
    expect(
      metricValue(text, "runcell_executions_total", { ...oneshot, language: "bash" }),
    ).toBeGreaterThanOrEqual(3);
    expect(
      metricValue(text, "runcell_execution_duration_seconds_count", oneshot) -
        metricValue(metricsBefore, "runcell_execution_duration_seconds_count", oneshot),
    ).toBe(after - before);
    expect(
      metricValue(text, "runcell_http_requests_total", { method: "POST", status_code: "200" }) -
        metricValue(metricsBefore, "runcell_http_requests_total", { method: "POST", status_code: "200" }),
    ).toBeGreaterThanOrEqual(14);
    expect(metricValue(text, "runcell_http_requests_total", { status_code: "400" })).toBeGreaterThanOrEqual(
      4,
    );
  });
});
