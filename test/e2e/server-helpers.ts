/**
 * `runcell serve` end to end: a real server process on loopback (built dist/, real kernels,
 * real sandboxes), driven over plain HTTP, SSE and WebSocket. One server per test file; every
 * process it started is accounted for when it stops.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import type { Execution, ExecutionEvent } from "../../src/execution/types.js";
import { isProcessAlive, pollUntil, processesMatching } from "../support/processes.js";
import { CLI, runCli } from "./cli-helpers.js";

export type { Execution, ExecutionEvent };

/** A session as the API returns it. */
export interface Session {
  id: string;
  kernel: string;
  language: string;
  mode: "read_only" | "write_access";
  status: "starting" | "idle" | "busy" | "restarting" | "ended";
  network: boolean;
  limits: Record<string, number | boolean | null>;
  startup_code: string | null;
  env_keys: string[];
  from_pool: boolean;
  kernel_id: string | null;
  restarts: number;
  state_lost_at: string | null;
  last_restart_reason: null | "died" | "restart" | "timeout";
  queue_depth: number;
  execution_count: number;
  created_at: string;
  last_activity_at: string;
  ended_at: string | null;
  end_reason: string | null;
}

export interface ServerOptions {
  /** Extra environment (RUNCELL_* options). */
  env?: Record<string, string>;
  /** Extra command-line arguments after the defaults. */
  args?: string[];
  /** Warm session kernels kept ready. Default 1. */
  poolSize?: number;
  /** Users to create tokens for once the server listens. Default alice and bob. */
  users?: string[];
  /** Reuse a data dir (and runtime dir) of an earlier server instead of a fresh one. */
  reuse?: { dataDir: string; runtimeDir: string; root: string };
}

export interface StopResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Processes of the server's tree (or with its runtime dir in their argv) still alive afterwards. */
  survivors: Array<{ pid: number; cmdline: string }>;
  /** How many processes of the server's tree ran (or wrapped) a kernel when it was signalled. */
  kernelsBefore: number;
}

export interface Server {
  url: string;
  port: number;
  pid: number;
  root: string;
  dataDir: string;
  runtimeDir: string;
  /** The admin token printed on an empty data dir (read from stderr when asked: it follows the address). */
  readonly adminToken: string | undefined;
  /** Tokens by user name. */
  tokens: Record<string, string>;
  proc: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  /** Creates a token through the CLI (same data dir) while the server runs. */
  createToken: (user: string) => Promise<string>;
  /** Sends a signal, first noting the server's process tree for `stop` to check. */
  signal: (signal: NodeJS.Signals) => void;
  /**
   * Sends `signal` (unless it already exited), waits for the exit, then for every process the
   * server started to go away; survivors are reported, then killed.
   */
  stop: (signal?: NodeJS.Signals, options?: { keepDir?: boolean }) => Promise<StopResult>;
}

const LISTEN_TIMEOUT_MS = 45_000;
/** How long a stopped server's processes may take to disappear (kills and reaping are async). */
const REAP_TIMEOUT_MS = 15_000;

/** Python that prints `connected` when it can open a TCP connection out, `blocked <error>` otherwise. */
export const NETWORK_PROBE = [
  "import socket",
  "try:",
  "    socket.create_connection(('1.1.1.1', 53), timeout=5)",
  "    print('connected')",
  "except OSError as error:",
  "    print('blocked', type(error).__name__)",
].join("\n");

/** Starts `runcell serve` on a free loopback port and creates the users' tokens. */
export async function startServer(options: ServerOptions = {}): Promise<Server> {
  const root = options.reuse?.root ?? mkdtempSync(join(tmpdir(), "runcell-e2e-server-"));
  // Sandboxed kernels run as other uids and must pass through to the runtime dir.
  chmodSync(root, 0o711);
  const dataDir = options.reuse?.dataDir ?? join(root, "data");
  const runtimeDir = options.reuse?.runtimeDir ?? join(root, "rt");
  mkdirSync(dataDir, { recursive: true });
  const args = [
    CLI,
    "serve",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--data-dir",
    dataDir,
    "--pool-size",
    String(options.poolSize ?? 1),
    ...(options.args ?? []),
  ];
  const proc = spawn(process.execPath, args, {
    env: { ...process.env, RUNCELL_RUNTIME_DIR: runtimeDir, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  let stdout = "";
  proc.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const listening = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`runcell serve did not print its address in time; stderr:\n${stderr}`));
    }, LISTEN_TIMEOUT_MS);
    proc.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /serving on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`runcell serve exited (code ${code}, signal ${signal}) before listening:\n${stderr}`));
    });
  });
  const createToken = async (user: string) => {
    const result = await runCli(["token", "create", "--user", user, "--data-dir", dataDir], {
      env: { RUNCELL_RUNTIME_DIR: runtimeDir, ...options.env },
      timeoutMs: 30_000,
    });
    const token = result.stdout.trim();
    if (result.code !== 0 || !/^rc_\S+$/.test(token)) {
      throw new Error(`token create failed (code ${result.code}): ${result.stdout}${result.stderr}`);
    }
    return token;
  };
  const tokens: Record<string, string> = {};
  let port: number;
  try {
    port = await listening;
    for (const user of options.users ?? ["alice", "bob"]) tokens[user] = await createToken(user);
  } catch (error) {
    // No Server is returned, so nothing else would stop it or remove its files.
    proc.kill("SIGKILL");
    await exited;
    if (!options.reuse) rmSync(root, { recursive: true, force: true });
    throw error;
  }
  const url = `http://127.0.0.1:${port}`;

  // Every process seen in the server's tree when it was signalled: they must all go away.
  const tracked = new Set<number>();
  let kernelsBefore = 0;
  const track = () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const tree = descendants(proc.pid!);
    for (const pid of tree) tracked.add(pid);
    kernelsBefore = Math.max(
      kernelsBefore,
      tree.filter((pid) => cmdlineOf(pid).includes("ipykernel")).length,
    );
  };
  const sent = new Set<NodeJS.Signals>();
  const signal = (sig: NodeJS.Signals) => {
    track();
    sent.add(sig);
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
  };
  let stopped: Promise<StopResult> | undefined;
  const stop = (sig: NodeJS.Signals = "SIGTERM", stopOptions: { keepDir?: boolean } = {}) => {
    stopped ??= (async () => {
      // A second SIGTERM would mean "exit now": send each signal once.
      if (sent.has(sig)) track();
      else signal(sig);
      const tree = [...tracked];
      // A server that hangs on shutdown is killed, and the result says so (signal SIGKILL).
      const backstop = setTimeout(() => proc.kill("SIGKILL"), REAP_TIMEOUT_MS);
      const { code, signal: exitSignal } = await exited;
      clearTimeout(backstop);
      const suspects = () => [...new Set([...tree, ...processesMatching(runtimeDir)])].filter(isProcessAlive);
      await pollUntil(() => suspects().length === 0, REAP_TIMEOUT_MS);
      const survivors = suspects().map((pid) => ({ pid, cmdline: cmdlineOf(pid) }));
      // Clean up after a leaky server so the next file starts on a quiet machine.
      for (const { pid } of survivors) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      if (!stopOptions.keepDir) rmSync(root, { recursive: true, force: true });
      return { code, signal: exitSignal, survivors, kernelsBefore };
    })();
    return stopped;
  };

  return {
    url,
    port,
    pid: proc.pid!,
    root,
    dataDir,
    runtimeDir,
    get adminToken() {
      return /admin token: (rc_\S+)/.exec(stderr)?.[1];
    },
    tokens,
    proc,
    stderr: () => stderr,
    stdout: () => stdout,
    createToken,
    signal,
    stop,
  };
}

/** The command line of a process (NULs as spaces), or "" once it is gone. */
export function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
  } catch {
    return "";
  }
}

/** Every live descendant of `pid` (children, their children…), from the parent links in /proc. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  const found: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    for (const child of children.get(stack.pop()!) ?? []) {
      found.push(child);
      stack.push(child);
    }
  }
  return found.filter(isProcessAlive);
}

/** Live kernel processes (ipykernel) in the server's process tree. */
export function kernelPids(server: Server): number[] {
  return descendants(server.pid).filter((pid) => cmdlineOf(pid).includes("ipykernel"));
}

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

export interface RequestOptions {
  /** Bearer token; `null` sends none. */
  token?: string | null;
  /** A JSON body (serialised) or raw bytes/text sent as is. */
  body?: unknown;
  raw?: string | Buffer;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/**
 * One HTTP request with node:http. A server may refuse a large body (413, `connection: close`)
 * before reading it: the body is sent in chunks and sending stops once the answer is in; a
 * connection reset before any answer (the refusal raced the upload) is retried a few times.
 */
export async function request(
  server: Server,
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await requestOnce(server, method, path, options);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const large = (options.raw?.length ?? 0) > 1024 * 1024;
      if (!large || attempt >= 3 || (code !== "EPIPE" && code !== "ECONNRESET")) throw error;
    }
  }
}

function requestOnce(
  server: Server,
  method: string,
  path: string,
  options: RequestOptions,
): Promise<Response> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let payload: Buffer | undefined;
  if (options.raw !== undefined) {
    payload = Buffer.isBuffer(options.raw) ? options.raw : Buffer.from(options.raw);
    headers["content-type"] ??= "application/json";
  } else if (options.body !== undefined) {
    payload = Buffer.from(JSON.stringify(options.body));
    headers["content-type"] ??= "application/json";
  }
  if (payload) headers["content-length"] = String(payload.length);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(`${server.url}${path}`, { method, headers }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString("utf8");
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    const timer = setTimeout(
      () => req.destroy(new Error(`${method} ${path}: no answer in time`)),
      options.timeoutMs ?? 60_000,
    );
    req.on("error", (error: NodeJS.ErrnoException) => {
      // A write error after the answer arrived is the server closing a refused upload.
      if (answered && (error.code === "EPIPE" || error.code === "ECONNRESET")) return;
      clearTimeout(timer);
      reject(error);
    });
    if (!payload) {
      req.end();
      return;
    }
    const body = payload;
    const CHUNK = 64 * 1024;
    let offset = 0;
    // Each chunk goes out after a turn of the event loop, so an early answer (read in the poll
    // phase) is seen before the next write could hit the closed connection.
    const pump = () => {
      if (answered || req.destroyed) return;
      const chunk = body.subarray(offset, offset + CHUNK);
      offset += chunk.length;
      if (offset >= body.length) {
        req.end(chunk);
        return;
      }
      if (req.write(chunk)) setImmediate(pump);
      else req.once("drain", () => setImmediate(pump));
    };
    pump();
  });
}

/** A JSON request that must answer `status`; returns the parsed body. */
export async function expectStatus(
  status: number,
  server: Server,
  method: string,
  path: string,
  options: RequestOptions = {},
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
): Promise<any> {
  const response = await request(server, method, path, options);
  if (response.status !== status) {
    throw new Error(
      `${method} ${path}: expected ${status}, got ${response.status}: ${response.text.slice(0, 500)}`,
    );
  }
  return response.json;
}

/** Creates a session (201) for the token's user. */
export function createSession(
  server: Server,
  token: string,
  body: Record<string, unknown> = {},
): Promise<Session> {
  return expectStatus(201, server, "POST", "/api/v1/sessions", { token, body });
}

/** Runs code on a session and returns the finished Execution (200). */
export function execute(
  server: Server,
  token: string,
  sessionId: string,
  code: string,
  extra: Record<string, unknown> = {},
): Promise<Execution> {
  return expectStatus(200, server, "POST", `/api/v1/sessions/${sessionId}/execute`, {
    token,
    body: { code, ...extra },
  });
}

/** The `text/plain` result of an execution, if any. */
export function resultText(execution: Execution): string | undefined {
  for (const output of execution.outputs) {
    if (output.type === "result") return output.data["text/plain"] as string;
  }
  return undefined;
}

/** A short summary of an execution for assertion messages. */
export function describeExecution(execution: Execution | undefined): string {
  if (!execution) return "no execution";
  return JSON.stringify({
    status: execution.status,
    error: execution.error && { name: execution.error.name, value: execution.error.value },
    limit: execution.limit,
    stdout: execution.stdout?.slice(0, 300),
    stderr: execution.stderr?.slice(0, 300),
  });
}

/** Polls a session until `check` holds (or the deadline passes); returns the last Session seen. */
export async function waitForSession(
  server: Server,
  token: string,
  id: string,
  check: (session: Session) => boolean,
  timeoutMs = 20_000,
): Promise<Session> {
  let last: Session | undefined;
  await pollUntilAsync(async () => {
    last = await expectStatus(200, server, "GET", `/api/v1/sessions/${id}`, { token });
    return check(last!);
  }, timeoutMs);
  return last!;
}

/** Waits until the warm pool holds a ready kernel (per /healthz), so the next default session takes it. */
export async function waitForPoolReady(server: Server, timeoutMs = 30_000): Promise<void> {
  const ready = await pollUntilAsync(async () => {
    const health = await expectStatus(200, server, "GET", "/healthz", { token: null });
    return (health.pool as Array<{ ready: number }>).some((profile) => profile.ready > 0);
  }, timeoutMs);
  if (!ready) throw new Error("the warm pool had no ready kernel in time");
}

/** Like pollUntil, for async checks (an HTTP round trip per probe). */
export async function pollUntilAsync(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = AbortSignal.timeout(timeoutMs);
  while (!deadline.aborted) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return check();
}

/** One Server-Sent Event as sent on the wire. */
export interface SseEvent {
  id: string | undefined;
  event: string | undefined;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
}

/** An SSE stream being read: events are queued as they arrive. */
export interface SseStream {
  status: number;
  headers: IncomingHttpHeaders;
  /** The next event; rejects when the stream ends first or the deadline passes. */
  next: (timeoutMs?: number) => Promise<SseEvent>;
  /** Every remaining event until the server ends the stream. */
  rest: (timeoutMs?: number) => Promise<SseEvent[]>;
  /** Non-SSE body (error answers). */
  body: () => Promise<string>;
  close: () => void;
}

/** Opens an SSE request (`Accept: text/event-stream`); resolves once the response head arrived. */
export function openSse(
  server: Server,
  method: string,
  path: string,
  options: { token?: string; body?: unknown } = {},
): Promise<SseStream> {
  const headers: Record<string, string> = { accept: "text/event-stream" };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
  if (payload) {
    headers["content-type"] = "application/json";
    headers["content-length"] = String(payload.length);
  }
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${server.url}${path}`, { method, headers }, (res) => {
      const queue: SseEvent[] = [];
      const waiters: Array<() => void> = [];
      let ended = false;
      let buffer = "";
      let raw = "";
      const decoder = new TextDecoder("utf-8");
      const wake = () => {
        for (const waiter of waiters.splice(0)) waiter();
      };
      const parseBlock = (block: string) => {
        const event: SseEvent = { id: undefined, event: undefined, data: undefined };
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line === "" || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "id") event.id = value;
          else if (field === "event") event.event = value;
          else if (field === "data") data.push(value);
        }
        if (data.length === 0) return; // comments and keep-alives
        const text = data.join("\n");
        try {
          event.data = JSON.parse(text);
        } catch {
          event.data = text;
        }
        queue.push(event);
      };
      res.on("data", (chunk: Buffer) => {
        const text = decoder.decode(chunk, { stream: true });
        raw += text;
        buffer += text.replaceAll("\r\n", "\n");
        let index: number;
        while ((index = buffer.indexOf("\n\n")) >= 0) {
          parseBlock(buffer.slice(0, index));
          buffer = buffer.slice(index + 2);
        }
        wake();
      });
      const finish = () => {
        if (ended) return;
        buffer += decoder.decode();
        if (buffer.trim()) parseBlock(buffer);
        ended = true;
        wake();
      };
      res.on("end", finish);
      res.on("close", finish);
      res.on("error", finish);
      const next = async (timeoutMs = 30_000): Promise<SseEvent> => {
        const deadline = AbortSignal.timeout(timeoutMs);
        while (queue.length === 0) {
          if (ended) throw new Error(`SSE stream ${path} ended; raw:\n${raw.slice(-2000)}`);
          if (deadline.aborted) throw new Error(`no SSE event on ${path} in time; raw:\n${raw.slice(-2000)}`);
          await new Promise<void>((wakeUp) => {
            const timer = setTimeout(wakeUp, 200);
            waiters.push(() => {
              clearTimeout(timer);
              wakeUp();
            });
          });
        }
        return queue.shift()!;
      };
      const rest = async (timeoutMs = 30_000): Promise<SseEvent[]> => {
        const deadline = AbortSignal.timeout(timeoutMs);
        while (!ended) {
          if (deadline.aborted)
            throw new Error(`SSE stream ${path} did not end in time; raw:\n${raw.slice(-2000)}`);
          await new Promise<void>((wakeUp) => {
            const timer = setTimeout(wakeUp, 200);
            waiters.push(() => {
              clearTimeout(timer);
              wakeUp();
            });
          });
        }
        return queue.splice(0);
      };
      const body = async () => {
        await rest();
        return raw;
      };
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        next,
        rest,
        body,
        close: () => req.destroy(),
      });
    });
    req.on("error", reject);
    if (payload) req.write(payload);
    req.end();
  });
}

/** A WebSocket frame from the server (sequenced session frames and unsequenced replies). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type WsFrame = Record<string, any>;

/** A WebSocket connection whose frames are queued until taken. */
export interface WsClient {
  ws: WebSocket;
  /** Every frame received so far, in order. */
  frames: WsFrame[];
  /** The first frame not yet taken that satisfies `match`; frames before it stay queued. */
  next: (match?: (frame: WsFrame) => boolean, timeoutMs?: number) => Promise<WsFrame>;
  send: (frame: unknown) => void;
  close: () => Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
}

/** The ws:// URL of a path on the server. */
export function wsUrl(server: Server, path: string): string {
  return `${server.url.replace(/^http/, "ws")}${path}`;
}

/**
 * Opens a WebSocket. Resolves once open; rejects with the HTTP status of a refused upgrade
 * (`error.status`).
 */
export function openWs(server: Server, path: string, token?: string): Promise<WsClient> {
  const ws = new WebSocket(wsUrl(server, path), {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const frames: WsFrame[] = [];
  const pending: WsFrame[] = [];
  const waiters = new Set<() => void>();
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once("close", (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const waiter of waiters) waiter();
    }),
  );
  ws.on("message", (data) => {
    const frame = JSON.parse(data.toString()) as WsFrame;
    frames.push(frame);
    pending.push(frame);
    for (const waiter of waiters) waiter();
  });
  const next = async (match: (frame: WsFrame) => boolean = () => true, timeoutMs = 30_000) => {
    const deadline = AbortSignal.timeout(timeoutMs);
    for (;;) {
      const index = pending.findIndex(match);
      if (index >= 0) return pending.splice(index, 1)[0]!;
      if (ws.readyState === WebSocket.CLOSED) {
        throw new Error(`WebSocket closed while waiting; frames: ${JSON.stringify(frames).slice(-2000)}`);
      }
      if (deadline.aborted) {
        throw new Error(
          `no matching WebSocket frame in time; frames: ${JSON.stringify(frames).slice(-2000)}`,
        );
      }
      await new Promise<void>((wake) => {
        const done = () => {
          clearTimeout(timer);
          waiters.delete(done);
          wake();
        };
        const timer = setTimeout(done, 200);
        waiters.add(done);
      });
    }
  };
  const client: WsClient = {
    ws,
    frames,
    next,
    send: (frame) => ws.send(JSON.stringify(frame)),
    close: async () => {
      if (ws.readyState !== WebSocket.CLOSED) ws.close();
      await closed;
    },
    closed,
  };
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(client));
    ws.once("unexpected-response", (_req, res) => {
      const error = new Error(`WebSocket upgrade refused with ${res.statusCode}`) as Error & {
        status?: number;
      };
      error.status = res.statusCode;
      res.resume();
      ws.terminate();
      reject(error);
    });
    ws.once("error", reject);
  });
}

/** Sum of a Prometheus metric's samples whose labels include every pair in `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const pairs = new Map<string, string>();
    for (const pair of (match[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) pairs.set(pair[1]!, pair[2]!);
    if (Object.entries(labels).every(([key, value]) => pairs.get(key) === value)) sum += Number(match[4]);
  }
  return sum;
}

/** A shell-free Python one-liner that prints `marker` `count` times, flushing each line. */
export function printLoop(marker: string, count: number): string {
  return `for _ in range(${count}):\n    print(${JSON.stringify(marker)}, flush=True)`;
}
