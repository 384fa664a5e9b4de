import type { ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { SYSTEM_PYTHON } from "./env.js";
import { bwrapArgv, describeExit, rotate, showCommand, tail, timedSpawn } from "./oneshot.js";
import { describeFailure, killGroup, onInterrupt, runProcess, spawnTracked, wasInterrupted } from "./proc.js";
import { quantile, round, roundSummary, type Summary, summarize } from "./stats.js";

/** The snippet of the warm execute, create and load parts. */
export const EXECUTE_CODE = "1+1";
/** The snippet of the one-shot part (as in the oneshot section). */
export const ONESHOT_HTTP_CODE = "print(1+1)";

const BWRAP = "/usr/bin/bwrap";
const LAUNCHER = "bench/jupyter_server_launch.py";
/** One request or execution; runcell's default execution time limit is 30 s. */
const REQUEST_TIMEOUT_MS = 60_000;
/** A server, or a kernel started through one, must be up within this long. */
const START_TIMEOUT_MS = 120_000;
/** After SIGTERM a server gets this long to stop its kernels and exit; then its group is killed. */
const STOP_GRACE_MS = 20_000;
/** How long a refill of runcell's pool may take before a create sample goes ahead anyway. */
const POOL_REFILL_TIMEOUT_MS = 60_000;
/** IPython's history in memory, as runcell starts its IPython kernels (and nbclient does). */
const HISTORY_IN_MEMORY = "--HistoryManager.hist_file=:memory:";

export interface ServerBenchOptions {
  /** runcell's CLI (dist/cli/main.js). */
  cli: string;
  /** The repository root (where bench/ lives). */
  root: string;
  /** Measured warm executions per engine, and unmeasured ones before them. */
  iterations: number;
  warmup: number;
  /** Measured samples per block; blocks rotate between the engines (all parts but load). */
  block: number;
  /** Measured session creations (create + first execute) per engine. */
  createRuns: number;
  /** Measured one-shot runs per engine, and unmeasured ones before them. */
  oneshotRuns: number;
  oneshotWarmup: number;
  oneshotBlock: number;
  /** The load run: `loadClients` clients spread over `loadSessions` sessions, each making `loadExecutes` executes. */
  loadSessions: number;
  loadClients: number;
  loadExecutes: number;
  log: (line: string) => void;
}

export type ExecuteEngine = "runcell" | "jupyter_server" | "jupyter_server_nodelay";
export type CreateEngine = "runcell" | "runcell_no_pool" | "jupyter_server";
export type OneshotHttpEngine = "runcell" | "bwrap";

/** One engine's samples of one part, in ms. */
export interface EngineLatency {
  summary: Summary;
  p90: number;
  samples_ms: number[];
}

export interface StopInfo {
  code: number | null;
  signal: string | null;
  ms: number;
  /** True when it did not exit within the grace period after SIGTERM and was killed. */
  killed: boolean;
}

export interface RuncellServerInfo {
  available: boolean;
  /** Why runcell's rows are missing. */
  error: string | null;
  command: string | null;
  /** How its kernels and runs are confined (the product's default). */
  sandbox: "bwrap";
  start_ms: number | null;
  /** GET /healthz once the server was up (its version and pool). */
  health: unknown;
  /** The Session of the warm-execute part, as created. */
  session: unknown;
  stop: StopInfo | null;
}

export interface JupyterServerInfo {
  /** What the launcher reported: Jupyter Server and tornado versions, the patched handler. */
  versions: Record<string, unknown> | null;
  command: string;
  kernelspec_argv: string[];
  /** POST /api/kernels until the first execute could be sent, for the warm part's kernels. */
  kernel_start_ms: Record<"jupyter_server" | "jupyter_server_nodelay", number | null>;
  stop: Record<"jupyter_server" | "jupyter_server_nodelay", StopInfo | null>;
}

export interface ExecuteResult {
  code: string;
  iterations: number;
  warmup: number;
  block: number;
  engines: Record<ExecuteEngine, EngineLatency | null>;
  /** Execution.duration_ms of runcell's measured executions: the server's own view. */
  runcell_duration_ms: Summary | null;
  /** runcell p50 / Jupyter Server with TCP_NODELAY p50. */
  p50_ratio_vs_nodelay: number | null;
  /** runcell p50 / stock Jupyter Server p50. */
  p50_ratio_vs_stock: number | null;
  p99_ratio_vs_nodelay: number | null;
  /** stock / TCP_NODELAY Jupyter Server p50: what Nagle's algorithm costs it. */
  stock_p50_ratio_vs_nodelay: number;
}

export interface CreateResult {
  code: string;
  runs: number;
  warmup: number;
  block: number;
  engines: Record<CreateEngine, EngineLatency | null>;
  /** How many of runcell's measured sessions were served by its pool (`from_pool`). */
  runcell_from_pool: number | null;
  /** The pool size of the `runcell` row, read from /healthz. */
  runcell_pool: unknown;
  /** Untimed waits for runcell's pool to be full again after each of its samples. */
  pool_refill_ms: Summary | null;
  /** Why the pool-less row is missing. */
  no_pool_error: string | null;
  /** The Jupyter Server the cold kernels were started on. */
  jupyter_server: "jupyter_server_nodelay";
  p50_ratio_vs_cold: number | null;
  no_pool_p50_ratio_vs_cold: number | null;
}

export interface OneshotHttpResult {
  code: string;
  runs: number;
  warmup: number;
  block: number;
  engines: Record<OneshotHttpEngine, EngineLatency | null>;
  runcell_duration_ms: Summary | null;
  bwrap_command: string;
  p50_ratio_vs_bwrap: number | null;
}

export type LoadResult =
  | {
      available: true;
      code: string;
      sessions: number;
      clients: number;
      executes_per_client: number;
      requests: number;
      completed: number;
      errors: number;
      /** The first few distinct errors, with how often each occurred. */
      error_samples: Array<{ error: string; count: number }>;
      latency: Summary;
      wall_ms: number;
      executions_per_s: number;
      session_create_ms: Summary;
    }
  | { available: false; error: string };

export interface ServerResult {
  runcell: RuncellServerInfo;
  jupyter_server: JupyterServerInfo;
  execute: ExecuteResult;
  create: CreateResult;
  oneshot: OneshotHttpResult;
  load: LoadResult;
  /** Where the server deviated from its contract (the bench worked around it, or the row failed). */
  problems: string[];
}

/* ------------------------------------------------------------------ HTTP */

interface HttpAnswer {
  status: number;
  body: string;
  /** From just before the request was made until the last byte of the response arrived. */
  ms: number;
}

class HttpError extends Error {}

/**
 * JSON over HTTP/1.1 with one keep-alive agent (TCP_NODELAY on its sockets), as a client that
 * cares about latency would hold: connections are reused, never set up per request.
 */
class HttpClient {
  readonly origin: string;
  readonly #headers: Record<string, string>;
  readonly #agent: http.Agent;

  constructor(origin: string, headers: Record<string, string>) {
    this.origin = origin;
    this.#headers = headers;
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: 256, noDelay: true });
  }

  request(method: string, path: string, body?: unknown, timeoutMs = REQUEST_TIMEOUT_MS): Promise<HttpAnswer> {
    return new Promise((resolve, reject) => {
      const startedAt = performance.now();
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const headers: Record<string, string> = { ...this.#headers, accept: "application/json" };
      if (payload !== undefined) {
        headers["content-type"] = "application/json";
        headers["content-length"] = String(Buffer.byteLength(payload));
      }
      const req = http.request(`${this.origin}${path}`, { method, headers, agent: this.#agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          const ms = performance.now() - startedAt;
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), ms });
        });
      });
      req.setTimeout(timeoutMs, () =>
        req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)),
      );
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** A request whose answer must have one of `expected` statuses and a JSON body (or none). */
  async json(
    method: string,
    path: string,
    body: unknown,
    expected: readonly number[],
  ): Promise<[unknown, number]> {
    const answer = await this.request(method, path, body);
    if (!expected.includes(answer.status)) {
      throw new HttpError(`${method} ${path}: HTTP ${answer.status} ${answer.body.slice(0, 300)}`);
    }
    if (answer.body === "") return [null, answer.ms];
    try {
      return [JSON.parse(answer.body) as unknown, answer.ms];
    } catch {
      throw new HttpError(`${method} ${path}: unreadable JSON ${answer.body.slice(0, 200)}`);
    }
  }

  close(): void {
    this.#agent.destroy();
  }
}

/* ------------------------------------------------------------------ server processes */

/** Keeps the last `cap` characters of a stream's text (stdout/stderr must be drained anyway). */
function keepTail(stream: NodeJS.ReadableStream | null, cap = 64 * 1024): () => string {
  let text = "";
  stream?.setEncoding("utf8");
  stream?.on("data", (chunk: string) => {
    text += chunk;
    if (text.length > cap * 2) text = text.slice(-cap);
  });
  return () => text.slice(-cap);
}

/**
 * A server child process in its own process group (tracked by proc.ts, so an interrupted bench
 * ends it). `stop()` asks the server alone to quit (SIGTERM), as an operator would, waits, then
 * kills what is left of its group.
 */
class ServerProcess {
  readonly argv: readonly string[];
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  #stopping: Promise<StopInfo> | null = null;

  constructor(argv: readonly string[], options: { cwd: string; env: NodeJS.ProcessEnv }) {
    this.argv = argv;
    this.child = spawnTracked(argv, options, "ignore");
    this.stdout = keepTail(this.child.stdout);
    this.stderr = keepTail(this.child.stderr);
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        this.exit ??= { code, signal };
        resolve(this.exit);
      };
      this.child.once("exit", done);
      this.child.once("error", () => done(127, null));
    });
  }

  describe(what: string): string {
    const how = this.exit
      ? this.exit.signal
        ? `was killed by ${this.exit.signal}`
        : `exited with code ${this.exit.code}`
      : "is still running";
    return [
      `${what} ${how}`,
      `command: ${showCommand(this.argv)}`,
      tail(this.stderr(), 12),
      tail(this.stdout(), 4),
    ]
      .filter(Boolean)
      .join("\n");
  }

  stop(graceMs = STOP_GRACE_MS): Promise<StopInfo> {
    this.#stopping ??= (async () => {
      const startedAt = performance.now();
      const pgid = this.child.pid;
      let killed = false;
      if (!this.exit) {
        this.child.kill("SIGTERM");
        const exitedInTime = await Promise.race([
          this.exited.then(() => true),
          new Promise<boolean>((resolve) => setTimeout(resolve, graceMs, false).unref()),
        ]);
        if (!exitedInTime) killed = true;
      }
      // Whatever is left in its group (nothing, after a clean exit) goes too.
      if (pgid !== undefined) killGroup(pgid, "SIGKILL");
      const exit = await this.exited;
      return { code: exit.code, signal: exit.signal, ms: Math.round(performance.now() - startedAt), killed };
    })();
    return this.#stopping;
  }
}

/** A free TCP port on the loopback interface (for a server that cannot pick its own). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A private directory that sandboxed processes (running as other uids) can pass through. */
async function privateDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o711);
  return dir;
}

/* ------------------------------------------------------------------ runcell */

interface ExecutionRecord {
  status?: unknown;
  stdout?: unknown;
  duration_ms?: unknown;
  outputs?: Array<{ type?: unknown; data?: Record<string, unknown> }>;
  error?: { name?: unknown; value?: unknown } | null;
}

/** `runcell serve` on a free loopback port with a fresh data dir, and a client holding a user's token. */
class RuncellServer {
  readonly process: ServerProcess;
  readonly client: HttpClient;
  readonly #dir: string;
  readonly startMs: number;
  readonly #unregister: () => void;

  private constructor(process: ServerProcess, client: HttpClient, dir: string, startMs: number) {
    this.process = process;
    this.client = client;
    this.#dir = dir;
    this.startMs = startMs;
    this.#unregister = onInterrupt(() => this.close());
  }

  static async start(options: {
    cli: string;
    root: string;
    args: readonly string[];
  }): Promise<RuncellServer> {
    const dir = await privateDir("runcell-bench-server-");
    const dataDir = join(dir, "data");
    const runtimeDir = join(dir, "run");
    await mkdir(dataDir, { mode: 0o711 });
    // The bench measures the defaults: runcell settings of the caller's environment stay out.
    const env: NodeJS.ProcessEnv = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith("RUNCELL_")),
    );
    // A runtime dir of its own, so two servers (and other runcell users) never share one.
    env.RUNCELL_RUNTIME_DIR = runtimeDir;
    let server: ServerProcess | null = null;
    try {
      const tokenArgv = [
        process.execPath,
        options.cli,
        "token",
        "create",
        "--user",
        "bench",
        "--data-dir",
        dataDir,
      ];
      const created = await runProcess(tokenArgv, { cwd: options.root, env, timeoutMs: 60_000 });
      const token = created.stdout.trim().split("\n").pop()?.trim() ?? "";
      if (created.code !== 0 || !token.startsWith("rc_")) {
        throw new Error(
          `runcell token create failed: ${describeFailure(created)}\nstdout: ${created.stdout.trim()}`,
        );
      }
      const argv = [
        process.execPath,
        options.cli,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        dataDir,
        ...options.args,
      ];
      const startedAt = performance.now();
      server = new ServerProcess(argv, { cwd: options.root, env });
      const origin = await RuncellServer.#address(server);
      const client = new HttpClient(origin, { authorization: `Bearer ${token}` });
      // Up means answering: the port line may come before the pool and the stores are ready.
      const health = await client.request("GET", "/healthz");
      if (health.status !== 200)
        throw new Error(`GET /healthz: HTTP ${health.status} ${health.body.slice(0, 200)}`);
      return new RuncellServer(server, client, dir, performance.now() - startedAt);
    } catch (error) {
      const detail = server ? `\n${server.describe("runcell serve")}` : "";
      await server?.stop();
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw new Error(`${(error as Error).message}${detail}`, { cause: error });
    }
  }

  /** The origin printed on stderr: `runcell: serving on http://127.0.0.1:PORT`. */
  static #address(server: ServerProcess): Promise<string> {
    const stderr = server.child.stderr!;
    return new Promise((resolve, reject) => {
      // A plain listener beside ServerProcess's (readline would pause the pipe when closed).
      let text = "";
      const onData = (chunk: string) => {
        text += chunk;
        const match = /runcell: serving on (http:\/\/[^\s/]+)/.exec(text);
        if (match?.[1]) finish(match[1]);
      };
      const timer = setTimeout(
        () => finish(new Error(`no "serving on" line within ${START_TIMEOUT_MS} ms`)),
        START_TIMEOUT_MS,
      );
      const finish = (outcome: string | Error) => {
        clearTimeout(timer);
        stderr.off("data", onData);
        if (typeof outcome === "string") resolve(outcome);
        else reject(outcome);
      };
      stderr.on("data", onData);
      void server.exited.then(() => finish(new Error("runcell serve exited before it was serving")));
    });
  }

  async health(): Promise<Record<string, unknown>> {
    const [body] = await this.client.json("GET", "/healthz", undefined, [200]);
    return body as Record<string, unknown>;
  }

  async createSession(): Promise<{ id: string; session: Record<string, unknown>; ms: number }> {
    const [body, ms] = await this.client.json("POST", "/api/v1/sessions", {}, [201]);
    const session = body as Record<string, unknown>;
    if (typeof session.id !== "string")
      throw new Error(`POST /api/v1/sessions: no id in ${JSON.stringify(body)}`);
    return { id: session.id, session, ms };
  }

  async deleteSession(id: string): Promise<void> {
    await this.client.json("DELETE", `/api/v1/sessions/${id}`, undefined, [204]);
  }

  /** POST …/execute of `1+1`: its time, checked to have completed with the result 2. */
  async execute(sessionId: string): Promise<{ ms: number; execution: ExecutionRecord }> {
    const path = `/api/v1/sessions/${sessionId}/execute`;
    const [body, ms] = await this.client.json("POST", path, { code: EXECUTE_CODE }, [200]);
    const execution = body as ExecutionRecord;
    const result = execution.outputs?.find((output) => output.type === "result")?.data?.["text/plain"];
    if (execution.status !== "completed" || result !== "2") {
      throw new Error(
        `POST ${path}: execution ${String(execution.status)}, result ${String(result)}: ${brief(execution)}`,
      );
    }
    return { ms, execution };
  }

  /** POST /api/v1/execute of `print(1+1)`: its time, checked to have printed 2. */
  async oneshot(): Promise<{ ms: number; execution: ExecutionRecord }> {
    const [body, ms] = await this.client.json("POST", "/api/v1/execute", { code: ONESHOT_HTTP_CODE }, [200]);
    const execution = body as ExecutionRecord;
    if (execution.status !== "completed" || execution.stdout !== "2\n") {
      throw new Error(
        `POST /api/v1/execute: execution ${String(execution.status)}, stdout ${JSON.stringify(execution.stdout)}: ${brief(execution)}`,
      );
    }
    return { ms, execution };
  }

  /** Stops the server (SIGTERM: it stops every kernel, then exits 0) and removes its data. */
  async close(): Promise<StopInfo> {
    this.client.close();
    const stop = await this.process.stop();
    this.#unregister();
    await rm(this.#dir, { recursive: true, force: true }).catch(() => undefined);
    return stop;
  }
}

function brief(execution: ExecutionRecord): string {
  return JSON.stringify({ error: execution.error, stdout: execution.stdout }).slice(0, 300);
}

/**
 * Kernels ready in runcell's pool, and how many it aims for, summed over its profiles: /healthz
 * has `pool: [{kernel, mode, target, ready, starting, …}]` (a single such object is read too).
 * Null when there is no pool.
 */
export function poolCounts(health: unknown): { ready: number; target: number } | null {
  const pool = (health as { pool?: unknown } | null)?.pool;
  const entries = Array.isArray(pool) ? (pool as unknown[]) : pool && typeof pool === "object" ? [pool] : [];
  let ready = 0;
  let target = 0;
  for (const entry of entries) {
    const stats = entry as { ready?: unknown; target?: unknown };
    if (typeof stats.ready !== "number" || typeof stats.target !== "number") return null;
    ready += stats.ready;
    target += stats.target;
  }
  return target > 0 ? { ready, target } : null;
}

/* ------------------------------------------------------------------ Jupyter Server */

interface JupyterMessage {
  channel?: string;
  header?: { msg_type?: string; msg_id?: string };
  parent_header?: { msg_id?: string };
  content?: Record<string, unknown>;
}

interface PendingExecute {
  startedAt: number;
  reply: boolean;
  idle: boolean;
  result: unknown;
  error: string | null;
  resolve: (ms: number) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * A kernel's channels WebSocket on Jupyter Server (legacy JSON frames, no subprotocol), with
 * TCP_NODELAY on the client's socket. An execute is complete when both its execute_reply and its
 * iopub `idle` status have arrived, as for runcell.
 */
class JupyterChannel {
  readonly #ws: WebSocket;
  readonly #session = randomUUID();
  readonly #pending = new Map<string, PendingExecute>();
  #closed: Error | null = null;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on("message", (data: WebSocket.RawData, isBinary: boolean) => {
      // Frames with binary buffers never answer an execute of 1+1.
      if (!isBinary) this.#onMessage(data.toString());
    });
    ws.on("close", () => this.#fail(new Error("Jupyter Server closed the kernel WebSocket")));
    ws.on("error", (error) => this.#fail(error));
  }

  /** Opens the channels of `kernelId`; Jupyter Server answers the upgrade once the kernel is ready. */
  static open(server: JupyterServer, kernelId: string): Promise<JupyterChannel> {
    const url = `${server.origin.replace("http", "ws")}/api/kernels/${kernelId}/channels?session_id=${randomUUID()}`;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers: server.authHeaders, handshakeTimeout: START_TIMEOUT_MS });
      ws.once("upgrade", (response) => response.socket.setNoDelay(true));
      ws.once("open", () => {
        ws.removeAllListeners("error");
        resolve(new JupyterChannel(ws));
      });
      ws.once("error", (error) => reject(new Error(`kernel WebSocket: ${error.message}`)));
    });
  }

  /** Sends an execute_request of `code`; resolves with the ms until its reply and idle arrived. */
  execute(code: string): Promise<number> {
    if (this.#closed) return Promise.reject(this.#closed);
    const msgId = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(msgId);
        reject(new Error(`Jupyter Server: no execute_reply and idle within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      const startedAt = performance.now();
      this.#pending.set(msgId, {
        startedAt,
        reply: false,
        idle: false,
        result: undefined,
        error: null,
        resolve,
        reject,
        timer,
      });
      this.#ws.send(
        JSON.stringify({
          header: {
            msg_id: msgId,
            username: "bench",
            session: this.#session,
            msg_type: "execute_request",
            version: "5.3",
            date: new Date().toISOString(),
          },
          parent_header: {},
          metadata: {},
          content: {
            code,
            silent: false,
            store_history: true,
            user_expressions: {},
            allow_stdin: false,
            stop_on_error: true,
          },
          channel: "shell",
          buffers: [],
        }),
      );
    });
  }

  #onMessage(text: string): void {
    const now = performance.now();
    let message: JupyterMessage;
    try {
      message = JSON.parse(text) as JupyterMessage;
    } catch {
      return;
    }
    const pending = this.#pending.get(message.parent_header?.msg_id ?? "");
    if (!pending) return;
    const type = message.header?.msg_type;
    if (type === "execute_reply") {
      pending.reply = true;
      if (message.content?.status !== "ok") {
        pending.error = `execute_reply ${String(message.content?.status)}: ${String(message.content?.evalue ?? "")}`;
      }
    } else if (type === "execute_result") {
      pending.result = (message.content?.data as Record<string, unknown> | undefined)?.["text/plain"];
    } else if (type === "status" && message.content?.execution_state === "idle") {
      pending.idle = true;
    }
    if (!pending.reply || !pending.idle) return;
    const msgId = message.parent_header!.msg_id!;
    this.#pending.delete(msgId);
    clearTimeout(pending.timer);
    if (pending.error) pending.reject(new Error(`Jupyter Server: ${pending.error}`));
    else if (pending.result !== "2")
      pending.reject(new Error(`Jupyter Server: result ${String(pending.result)}`));
    else pending.resolve(now - pending.startedAt);
  }

  #fail(error: Error): void {
    this.#closed ??= error;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
  }

  close(): Promise<void> {
    this.#closed ??= new Error("closed");
    if (this.#ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#ws.terminate();
        resolve();
      }, 2000);
      this.#ws.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.#ws.close();
    });
  }
}

/**
 * Debian's Jupyter Server (/usr/bin/python3) through bench/jupyter_server_launch.py, on a free
 * loopback port with a token, private Jupyter dirs, and a python3 kernelspec that keeps IPython's
 * history in memory like runcell's kernels. `nodelay` sets TCP_NODELAY on its kernel WebSockets.
 */
class JupyterServer {
  readonly process: ServerProcess;
  readonly origin: string;
  readonly authHeaders: Record<string, string>;
  readonly client: HttpClient;
  readonly versions: Record<string, unknown> | null;
  readonly #dir: string;
  readonly #unregister: () => void;
  readonly #kernels = new Set<string>();

  private constructor(
    process: ServerProcess,
    origin: string,
    token: string,
    dir: string,
    versions: Record<string, unknown> | null,
  ) {
    this.process = process;
    this.origin = origin;
    this.authHeaders = { authorization: `token ${token}` };
    this.client = new HttpClient(origin, this.authHeaders);
    this.#dir = dir;
    this.versions = versions;
    this.#unregister = onInterrupt(() => this.close());
  }

  static kernelspecArgv(): string[] {
    return [SYSTEM_PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}", HISTORY_IN_MEMORY];
  }

  static command(
    root: string,
    nodelay: boolean,
    port: number | string,
    token: string,
    dir: string,
  ): string[] {
    return [
      SYSTEM_PYTHON,
      join(root, LAUNCHER),
      ...(nodelay ? ["--nodelay"] : []),
      "--ServerApp.ip=127.0.0.1",
      `--ServerApp.port=${port}`,
      "--ServerApp.port_retries=0",
      `--ServerApp.token=${token}`,
      "--ServerApp.open_browser=False",
      // This bench may run as root (CI, containers); Jupyter Server refuses that unless told.
      ...(process.getuid?.() === 0 ? ["--ServerApp.allow_root=True"] : []),
      `--ServerApp.root_dir=${dir}`,
    ];
  }

  static async start(options: { root: string; nodelay: boolean }): Promise<JupyterServer> {
    const dir = await mkdtemp(join(tmpdir(), "runcell-bench-jupyter-"));
    const dataDir = join(dir, "data");
    await mkdir(join(dataDir, "kernels/python3"), { recursive: true });
    await writeFile(
      join(dataDir, "kernels/python3/kernel.json"),
      JSON.stringify({
        argv: JupyterServer.kernelspecArgv(),
        display_name: "Python 3 (ipykernel)",
        language: "python",
      }),
    );
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      JUPYTER_CONFIG_DIR: join(dir, "config"),
      JUPYTER_DATA_DIR: dataDir,
      JUPYTER_RUNTIME_DIR: join(dir, "runtime"),
      // The same kernel environment tweak runcell applies (silences debugpy's start-up warning).
      PYDEVD_DISABLE_FILE_VALIDATION: "1",
    };
    const token = randomBytes(24).toString("hex");
    let server: ServerProcess | null = null;
    try {
      // Jupyter Server 1.x cannot listen on port 0 and report the port; a free one is picked here.
      const port = await freePort();
      const argv = JupyterServer.command(options.root, options.nodelay, port, token, dir);
      server = new ServerProcess(argv, { cwd: dir, env });
      const origin = `http://127.0.0.1:${port}`;
      const probe = new HttpClient(origin, { authorization: `token ${token}` });
      const deadline = performance.now() + START_TIMEOUT_MS;
      try {
        for (;;) {
          if (server.exit) throw new Error("Jupyter Server exited while starting");
          if (wasInterrupted()) throw new Error("the bench was interrupted");
          if (performance.now() > deadline)
            throw new Error(`Jupyter Server not up within ${START_TIMEOUT_MS} ms`);
          const answer = await probe.request("GET", "/api/status", undefined, 2000).catch(() => null);
          if (answer?.status === 200) break;
          await sleep(100);
        }
      } finally {
        probe.close();
      }
      const versionLine = server
        .stderr()
        .split("\n")
        .find((line) => line.startsWith('{"jupyter_server"'));
      const versions = versionLine ? (JSON.parse(versionLine) as Record<string, unknown>) : null;
      return new JupyterServer(server, origin, token, dir, versions);
    } catch (error) {
      const detail = server ? `\n${server.describe("Jupyter Server")}` : "";
      await server?.stop();
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw new Error(`${(error as Error).message}${detail}`, { cause: error });
    }
  }

  async kernelspecArgv(): Promise<string[]> {
    const [body] = await this.client.json("GET", "/api/kernelspecs", undefined, [200]);
    const spec = (body as { kernelspecs?: Record<string, { spec?: { argv?: string[] } }> }).kernelspecs
      ?.python3;
    return spec?.spec?.argv ?? [];
  }

  async startKernel(): Promise<string> {
    const [body] = await this.client.json("POST", "/api/kernels", { name: "python3" }, [201]);
    const id = (body as { id?: unknown }).id;
    if (typeof id !== "string") throw new Error(`POST /api/kernels: no id in ${JSON.stringify(body)}`);
    this.#kernels.add(id);
    return id;
  }

  async deleteKernel(id: string): Promise<void> {
    await this.client.json("DELETE", `/api/kernels/${id}`, undefined, [204]);
    this.#kernels.delete(id);
  }

  /** Shuts its kernels down, then the server (SIGTERM, as for runcell). */
  async close(): Promise<StopInfo> {
    for (const id of [...this.#kernels]) await this.deleteKernel(id).catch(() => undefined);
    this.client.close();
    const stop = await this.process.stop();
    this.#unregister();
    await rm(this.#dir, { recursive: true, force: true }).catch(() => undefined);
    return stop;
  }
}

/* ------------------------------------------------------------------ measurement */

/** One engine of a part: `run` makes one measured sample and returns its ms. */
interface Driver<E extends string> {
  engine: E;
  run(): Promise<number>;
}

/**
 * `warmup` unmeasured samples per engine, then `runs` measured ones in blocks of `block` that
 * rotate between the engines (A B C, B C A, …). Only one engine works at any moment.
 */
async function rotatingBlocks<E extends string>(
  drivers: ReadonlyArray<Driver<E>>,
  counts: { runs: number; warmup: number; block: number },
): Promise<Map<E, number[]>> {
  for (const driver of drivers) for (let i = 0; i < counts.warmup; i++) await driver.run();
  const samples = new Map(drivers.map((driver) => [driver.engine, [] as number[]]));
  for (let done = 0, block = 0; done < counts.runs; block++) {
    const count = Math.min(counts.block, counts.runs - done);
    for (const driver of rotate(drivers, block)) {
      const into = samples.get(driver.engine)!;
      for (let i = 0; i < count; i++) into.push(await driver.run());
    }
    done += count;
  }
  return samples;
}

function latencyOf(samples: readonly number[] | undefined): EngineLatency | null {
  if (!samples) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    summary: roundSummary(summarize(samples)),
    p90: round(quantile(sorted, 0.9)),
    samples_ms: samples.map((ms) => round(ms)),
  };
}

const ratioOf = (ours: EngineLatency | null, theirs: EngineLatency | null, key: "p50" | "p99" = "p50") =>
  ours && theirs ? round(ours.summary[key] / theirs.summary[key]) : null;

const durations = (values: number[]): Summary | null =>
  values.length ? roundSummary(summarize(values)) : null;

function durationOf(execution: ExecutionRecord, into: number[]): void {
  if (typeof execution.duration_ms === "number") into.push(execution.duration_ms);
}

/** Part 1: a warm `1+1` on runcell's session vs a kernel WebSocket of stock and TCP_NODELAY Jupyter Server. */
async function measureExecute(
  runcell: RuncellServer | null,
  stock: JupyterServer,
  tuned: JupyterServer,
  info: { runcell: RuncellServerInfo; jupyter: JupyterServerInfo },
  options: ServerBenchOptions,
  problems: Set<string>,
): Promise<ExecuteResult> {
  const closers: Array<() => Promise<void>> = [];
  try {
    const drivers: Array<Driver<ExecuteEngine>> = [];
    const runcellDurations: number[] = [];
    if (runcell) {
      const { id, session } = await runcell.createSession();
      info.runcell.session = session;
      closers.push(() => runcell.deleteSession(id));
      // Kernels the pool starts in the background would weigh on the first blocks.
      await waitForPool(runcell, problems);
      drivers.push({
        engine: "runcell",
        async run() {
          const { ms, execution } = await runcell.execute(id);
          durationOf(execution, runcellDurations);
          return ms;
        },
      });
    }
    for (const [engine, server] of [
      ["jupyter_server", stock],
      ["jupyter_server_nodelay", tuned],
    ] as const) {
      const startedAt = performance.now();
      const kernelId = await server.startKernel();
      closers.push(() => server.deleteKernel(kernelId));
      const channel = await JupyterChannel.open(server, kernelId);
      closers.push(() => channel.close());
      info.jupyter.kernel_start_ms[engine] = Math.round(performance.now() - startedAt);
      drivers.push({ engine, run: () => channel.execute(EXECUTE_CODE) });
    }
    options.log(
      `server: warm execute ${JSON.stringify(EXECUTE_CODE)}, ${options.warmup} warm-up + ${options.iterations} ` +
        `measured per engine (${drivers.map((driver) => driver.engine).join(", ")}), in blocks of ${options.block}`,
    );
    const samples = await rotatingBlocks(drivers, {
      runs: options.iterations,
      warmup: options.warmup,
      block: options.block,
    });
    const engines: Record<ExecuteEngine, EngineLatency | null> = {
      runcell: latencyOf(samples.get("runcell")),
      jupyter_server: latencyOf(samples.get("jupyter_server")),
      jupyter_server_nodelay: latencyOf(samples.get("jupyter_server_nodelay")),
    };
    return {
      code: EXECUTE_CODE,
      iterations: options.iterations,
      warmup: options.warmup,
      block: options.block,
      engines,
      runcell_duration_ms: durations(runcellDurations.slice(-options.iterations)),
      p50_ratio_vs_nodelay: ratioOf(engines.runcell, engines.jupyter_server_nodelay),
      p50_ratio_vs_stock: ratioOf(engines.runcell, engines.jupyter_server),
      p99_ratio_vs_nodelay: ratioOf(engines.runcell, engines.jupyter_server_nodelay, "p99"),
      stock_p50_ratio_vs_nodelay: ratioOf(engines.jupyter_server, engines.jupyter_server_nodelay)!,
    };
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  }
}

/** Waits until runcell's pool is full again (untimed); returns how long that took, null if unknown. */
async function waitForPool(runcell: RuncellServer, problems: Set<string>): Promise<number | null> {
  const startedAt = performance.now();
  for (;;) {
    const counts = poolCounts(await runcell.health());
    if (!counts) {
      problems.add(
        "GET /healthz: no pool counts to wait on (a fixed 2 s pause between create samples instead)",
      );
      await sleep(2000);
      return null;
    }
    if (counts.ready >= counts.target) return performance.now() - startedAt;
    if (performance.now() - startedAt > POOL_REFILL_TIMEOUT_MS) {
      problems.add(
        `runcell's pool did not refill within ${POOL_REFILL_TIMEOUT_MS} ms (${JSON.stringify(counts)})`,
      );
      return null;
    }
    await sleep(20);
  }
}

/**
 * Part 2: a new session and its first execute. runcell from its pool (full before each sample),
 * runcell without a pool, and a cold kernel on Jupyter Server (POST /api/kernels, WebSocket,
 * first execute). Clean-up after each sample (delete, pool refill) is not timed.
 */
async function measureCreate(
  runcell: RuncellServer | null,
  tuned: JupyterServer,
  options: ServerBenchOptions,
  problems: Set<string>,
): Promise<CreateResult> {
  const drivers: Array<Driver<CreateEngine>> = [];
  const refills: number[] = [];
  let fromPool = 0;
  let measuredRuns = false;
  let noPool: RuncellServer | null = null;
  let noPoolError: string | null = null;
  let runcellPool: unknown = null;
  const sessionDriver = (
    engine: CreateEngine,
    server: RuncellServer,
    pooled: boolean,
  ): Driver<CreateEngine> => ({
    engine,
    async run() {
      const startedAt = performance.now();
      const { id, session } = await server.createSession();
      await server.execute(id);
      const ms = performance.now() - startedAt;
      if (pooled && measuredRuns && session.from_pool === true) fromPool++;
      await server.deleteSession(id);
      if (pooled) {
        const waited = await waitForPool(server, problems);
        if (waited !== null) refills.push(waited);
      }
      return ms;
    },
  });
  try {
    if (runcell) {
      runcellPool = (await runcell.health()).pool ?? null;
      await waitForPool(runcell, problems);
      drivers.push(sessionDriver("runcell", runcell, true));
      try {
        noPool = await RuncellServer.start({
          cli: options.cli,
          root: options.root,
          args: ["--sandbox", "bwrap", "--pool-size", "0"],
        });
        drivers.push(sessionDriver("runcell_no_pool", noPool, false));
      } catch (error) {
        if (wasInterrupted()) throw error;
        noPoolError = (error as Error).message;
        options.log(`server: runcell --pool-size 0 did not start: ${noPoolError.split("\n")[0]}`);
      }
    }
    drivers.push({
      engine: "jupyter_server",
      async run() {
        const startedAt = performance.now();
        const kernelId = await tuned.startKernel();
        let channel: JupyterChannel | null = null;
        try {
          channel = await JupyterChannel.open(tuned, kernelId);
          await channel.execute(EXECUTE_CODE);
          return performance.now() - startedAt;
        } finally {
          await channel?.close();
          await tuned.deleteKernel(kernelId);
        }
      },
    });
    const block = Math.max(1, Math.ceil(options.createRuns / 4));
    const warmup = 1;
    options.log(
      `server: session create + first execute, ${warmup} warm-up + ${options.createRuns} measured per engine ` +
        `(${drivers.map((driver) => driver.engine).join(", ")}), in blocks of ${block}`,
    );
    // Warm-ups are run before `measuredRuns` is set: only measured sessions are counted.
    for (const driver of drivers) for (let i = 0; i < warmup; i++) await driver.run();
    measuredRuns = true;
    const samples = await rotatingBlocks(drivers, { runs: options.createRuns, warmup: 0, block });
    const engines: Record<CreateEngine, EngineLatency | null> = {
      runcell: latencyOf(samples.get("runcell")),
      runcell_no_pool: latencyOf(samples.get("runcell_no_pool")),
      jupyter_server: latencyOf(samples.get("jupyter_server")),
    };
    return {
      code: EXECUTE_CODE,
      runs: options.createRuns,
      warmup,
      block,
      engines,
      runcell_from_pool: runcell ? fromPool : null,
      runcell_pool: runcellPool,
      pool_refill_ms: durations(refills.slice(-options.createRuns)),
      no_pool_error: noPoolError,
      jupyter_server: "jupyter_server_nodelay",
      p50_ratio_vs_cold: ratioOf(engines.runcell, engines.jupyter_server),
      no_pool_p50_ratio_vs_cold: ratioOf(engines.runcell_no_pool, engines.jupyter_server),
    };
  } finally {
    if (noPool) {
      const stop = await noPool.close();
      noteStop("runcell serve --pool-size 0", stop, problems);
    }
  }
}

/** Part 3: POST /api/v1/execute of print(1+1) vs spawning the minimal bubblewrap sandbox directly. */
async function measureOneshot(
  runcell: RuncellServer | null,
  options: ServerBenchOptions,
): Promise<OneshotHttpResult> {
  const argv = bwrapArgv([], ONESHOT_HTTP_CODE);
  const runcellDurations: number[] = [];
  const drivers: Array<Driver<OneshotHttpEngine>> = [];
  if (runcell) {
    drivers.push({
      engine: "runcell",
      async run() {
        const { ms, execution } = await runcell.oneshot();
        durationOf(execution, runcellDurations);
        return ms;
      },
    });
  }
  drivers.push({
    engine: "bwrap",
    async run() {
      const outcome = await timedSpawn(argv);
      if (outcome.code !== 0 || outcome.stdout !== "2\n") {
        throw new Error(
          `bwrap: ${describeExit(outcome)}\ncommand: ${showCommand(argv)}\n${tail(outcome.stderr)}`,
        );
      }
      return outcome.ms;
    },
  });
  options.log(
    `server: one-shot ${JSON.stringify(ONESHOT_HTTP_CODE)}, ${options.oneshotWarmup} warm-up + ${options.oneshotRuns} ` +
      `measured per engine (${drivers.map((driver) => driver.engine).join(", ")}), in blocks of ${options.oneshotBlock}`,
  );
  const samples = await rotatingBlocks(drivers, {
    runs: options.oneshotRuns,
    warmup: options.oneshotWarmup,
    block: options.oneshotBlock,
  });
  const engines: Record<OneshotHttpEngine, EngineLatency | null> = {
    runcell: latencyOf(samples.get("runcell")),
    bwrap: latencyOf(samples.get("bwrap")),
  };
  return {
    code: ONESHOT_HTTP_CODE,
    runs: options.oneshotRuns,
    warmup: options.oneshotWarmup,
    block: options.oneshotBlock,
    engines,
    runcell_duration_ms: durations(runcellDurations.slice(-options.oneshotRuns)),
    bwrap_command: showCommand(argv),
    p50_ratio_vs_bwrap: ratioOf(engines.runcell, engines.bwrap),
  };
}

/**
 * Part 4: `loadClients` clients at once over `loadSessions` sessions (client i on session
 * i mod sessions), each making `loadExecutes` executes of 1+1 back to back. Every failed request
 * is an error; throughput = completed executes / wall clock until the last client is done.
 */
async function measureLoad(
  runcell: RuncellServer,
  options: ServerBenchOptions,
  problems: Set<string>,
): Promise<LoadResult> {
  const sessions: string[] = [];
  const createMs: number[] = [];
  try {
    for (let i = 0; i < options.loadSessions; i++) {
      const startedAt = performance.now();
      const { id } = await runcell.createSession();
      sessions.push(id);
      await runcell.execute(id);
      createMs.push(performance.now() - startedAt);
    }
    // The pool refills what the sessions took: that must not run during the load.
    await waitForPool(runcell, problems);
    options.log(
      `server: load, ${options.loadClients} clients on ${options.loadSessions} sessions, ` +
        `${options.loadExecutes} executes of ${JSON.stringify(EXECUTE_CODE)} each`,
    );
    const latencies: number[] = [];
    const errors = new Map<string, number>();
    let failed = 0;
    const startedAt = performance.now();
    await Promise.all(
      Array.from({ length: options.loadClients }, async (_, client) => {
        const session = sessions[client % sessions.length]!;
        for (let i = 0; i < options.loadExecutes; i++) {
          if (wasInterrupted()) throw new Error("the bench was interrupted");
          try {
            latencies.push((await runcell.execute(session)).ms);
          } catch (error) {
            failed++;
            // Ids differ between otherwise equal errors.
            const key = (error as Error).message.replace(/[0-9a-f]{8}-[0-9a-f-]{27,}/g, "<id>").slice(0, 300);
            errors.set(key, (errors.get(key) ?? 0) + 1);
          }
        }
      }),
    );
    const wallMs = performance.now() - startedAt;
    return {
      available: true,
      code: EXECUTE_CODE,
      sessions: options.loadSessions,
      clients: options.loadClients,
      executes_per_client: options.loadExecutes,
      requests: options.loadClients * options.loadExecutes,
      completed: latencies.length,
      errors: failed,
      error_samples: [...errors].slice(0, 5).map(([error, count]) => ({ error, count })),
      latency: roundSummary(summarize(latencies)),
      wall_ms: round(wallMs, 1),
      executions_per_s: round(latencies.length / (wallMs / 1000), 1),
      session_create_ms: roundSummary(summarize(createMs)),
    };
  } finally {
    for (const id of sessions) await runcell.deleteSession(id).catch(() => undefined);
  }
}

function noteStop(what: string, stop: StopInfo, problems: Set<string>): void {
  if (stop.killed) problems.add(`${what}: still running ${STOP_GRACE_MS} ms after SIGTERM (killed)`);
  else if (stop.code !== 0) {
    problems.add(
      `${what}: exited with ${stop.signal ? `signal ${stop.signal}` : `code ${stop.code}`} on SIGTERM`,
    );
  }
}

/**
 * runcell's HTTP server (`runcell serve`, sandboxed sessions) against Jupyter Server, stock and
 * with TCP_NODELAY, and against spawning bubblewrap directly: warm execute, session create +
 * first execute, one-shot runs, and a load run. When runcell's server cannot start, its rows
 * are missing (with the reason) and the references are still measured.
 */
export async function runServerBench(options: ServerBenchOptions): Promise<ServerResult> {
  if (!existsSync(BWRAP)) throw new Error(`${BWRAP} does not exist: bubblewrap is not installed`);
  const problems = new Set<string>();
  const started: Array<{ name: string; close: () => Promise<StopInfo>; note: (stop: StopInfo) => void }> = [];
  const serveArgs = ["--sandbox", "bwrap"];
  const runcellInfo: RuncellServerInfo = {
    available: false,
    error: null,
    command: `node ${options.cli} serve --host 127.0.0.1 --port 0 --data-dir DIR ${serveArgs.join(" ")}`,
    sandbox: "bwrap",
    start_ms: null,
    health: null,
    session: null,
    stop: null,
  };
  const jupyterInfo: JupyterServerInfo = {
    versions: null,
    command: showCommand(JupyterServer.command(options.root, false, "PORT", "TOKEN", "DIR")),
    kernelspec_argv: [],
    kernel_start_ms: { jupyter_server: null, jupyter_server_nodelay: null },
    stop: { jupyter_server: null, jupyter_server_nodelay: null },
  };
  try {
    options.log("server: starting Jupyter Server (stock, and with TCP_NODELAY on its kernel WebSockets)");
    const stock = await JupyterServer.start({ root: options.root, nodelay: false });
    started.push({
      name: "stock",
      close: () => stock.close(),
      note: (s) => (jupyterInfo.stop.jupyter_server = s),
    });
    const tuned = await JupyterServer.start({ root: options.root, nodelay: true });
    started.push({
      name: "nodelay",
      close: () => tuned.close(),
      note: (s) => (jupyterInfo.stop.jupyter_server_nodelay = s),
    });
    jupyterInfo.versions = tuned.versions;
    jupyterInfo.kernelspec_argv = await tuned.kernelspecArgv();

    let runcell: RuncellServer | null = null;
    options.log(`server: starting ${runcellInfo.command}`);
    try {
      runcell = await RuncellServer.start({ cli: options.cli, root: options.root, args: serveArgs });
      const server = runcell;
      started.push({
        name: "runcell",
        close: () => server.close(),
        note: (stop) => {
          runcellInfo.stop = stop;
          noteStop("runcell serve", stop, problems);
        },
      });
      runcellInfo.available = true;
      runcellInfo.start_ms = Math.round(runcell.startMs);
      runcellInfo.health = await runcell.health();
    } catch (error) {
      if (wasInterrupted()) throw error;
      runcellInfo.error = (error as Error).message;
      options.log(`server: runcell serve is not available: ${runcellInfo.error.split("\n")[0]}`);
    }

    const execute = await measureExecute(
      runcell,
      stock,
      tuned,
      { runcell: runcellInfo, jupyter: jupyterInfo },
      options,
      problems,
    );
    const create = await measureCreate(runcell, tuned, options, problems);
    const oneshot = await measureOneshot(runcell, options);
    const load: LoadResult = runcell
      ? await measureLoad(runcell, options, problems)
      : { available: false, error: runcellInfo.error ?? "runcell serve is not available" };

    for (const server of started.splice(0).reverse()) server.note(await server.close());
    return {
      runcell: runcellInfo,
      jupyter_server: jupyterInfo,
      execute,
      create,
      oneshot,
      load,
      problems: [...problems],
    };
  } finally {
    for (const server of started.reverse()) {
      await server.close().catch((error: Error) => options.log(`closing ${server.name}: ${error.message}`));
    }
  }
}
