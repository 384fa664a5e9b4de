import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { fileURLToPath } from "node:url";

const HELPER_SOURCE = fileURLToPath(new URL("../../assets/spawn-helper.py", import.meta.url));
/** The helper runs on Debian's Python; any python3 would do, it imports only the standard library. */
const PYTHON = "/usr/bin/python3";
/** How long a child's streams may take to connect once the helper says it started it. */
const CONNECT_DEADLINE_MS = 10_000;
const STREAMS = ["stdin", "stdout", "stderr"] as const;
/** Longest header line a stream connection may send before it is dropped. */
const MAX_HEADER_BYTES = 256;

/** What spawnChild starts: as child_process.spawn's child, reduced to what ManagedProcess uses. */
export interface SpawnedChild {
  readonly pid: number;
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Settles once the process exited, or could not be started (code 127, `error` set). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>;
}

export interface SpawnChildOptions {
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
  stdin: boolean;
}

type HelperEvent =
  | { ev: "spawned"; id: number; pid: number }
  | { ev: "error"; id: number; errno: number; message: string }
  | { ev: "exit"; id: number; code: number | null; signal: number | null };

interface Pending {
  /** Resolves with the pid, or rejects when the helper could not start the child. */
  started: { resolve: (pid: number) => void; reject: (error: Error) => void };
  exit: (exit: { code: number | null; signal: NodeJS.Signals | null; error?: Error }) => void;
}

/**
 * A long-lived helper process that starts runcell's child processes (kernels, sandboxes), so
 * that runcell never forks itself: fork copies the parent's page tables, about 40 µs per MiB of
 * Node memory, while the helper uses posix_spawn. The children's stdio are Unix-socket
 * connections to runcell (a private socket, mode 0600, each connection introduced by a random
 * token), so their output never passes through the helper.
 */
export class SpawnHelper {
  readonly #helper: ChildProcess;
  readonly #server: Server;
  readonly #dir: string;
  readonly #token: string;
  readonly #pending = new Map<number, Pending>();
  /** Streams waiting for their connection, by "ID NAME"; removed once attached. */
  readonly #routes = new Map<string, PassThrough>();
  #nextId = 1;
  #dead: Error | undefined;

  private constructor(helper: ChildProcess, server: Server, dir: string, token: string) {
    this.#token = token;
    this.#helper = helper;
    this.#server = server;
    this.#dir = dir;
    server.on("connection", (socket) => this.#onConnection(socket));
    let buffered = "";
    helper.stdout!.setEncoding("utf8");
    helper.stdout!.on("data", (chunk: string) => {
      buffered += chunk;
      for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line) this.#onEvent(JSON.parse(line) as HelperEvent);
      }
    });
    let stderr = "";
    helper.stderr!.setEncoding("utf8");
    helper.stderr!.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-4096);
    });
    helper.stdin!.on("error", () => undefined);
    const onGone = (code: number | null, signal: NodeJS.Signals | null) => {
      if (this.#dead) return;
      this.#dead = new Error(
        `the spawn helper exited (${signal ?? `code ${code}`})${stderr ? `: ${stderr.trim()}` : ""}`,
      );
      for (const [, pending] of this.#pending) {
        pending.started.reject(this.#dead);
        // Its children carry their own parent-death signal: they are gone too.
        pending.exit({ code: null, signal: "SIGKILL" });
      }
      this.#pending.clear();
      for (const stream of this.#routes.values()) stream.end();
      this.#routes.clear();
      this.#close();
    };
    helper.once("exit", onGone);
    process.once("exit", this.#removeDir);
    helper.once("error", () => onGone(127, null));
    // The helper keeps runcell alive only while one of its children runs (as a child process
    // of runcell's own would): see #holdOpen.
    helper.unref();
    (helper.stderr as Socket).unref();
    (helper.stdin as unknown as Socket).unref();
    this.#holdOpen();
  }

  /** Refs the helper's event stream while a child is pending or running, unrefs it otherwise. */
  #holdOpen(): void {
    const events = this.#helper.stdout as Socket;
    if (this.#pending.size > 0 || this.#routes.size > 0) {
      events.ref();
      this.#server.ref();
    } else {
      events.unref();
      this.#server.unref();
    }
  }

  /** Starts a helper listening on a private socket in a fresh 0700 directory. */
  static async start(): Promise<SpawnHelper> {
    const dir = mkdtempSync(join(tmpdir(), "runcell-spawn-"));
    const socketPath = join(dir, "s");
    // Half-open: a child's stdin connection is closed by the helper for writing from the start,
    // and runcell must still be able to write to it.
    const server = createServer({ allowHalfOpen: true });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ path: socketPath, readableAll: false, writableAll: false }, () => resolve());
      });
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    const token = randomBytes(16).toString("hex");
    const helper = spawn(PYTHON, ["-I", "-S", HELPER_SOURCE, socketPath, token], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { PATH: "/usr/bin:/bin", LANG: "C.UTF-8" },
    });
    await new Promise<void>((resolve) => {
      helper.once("spawn", resolve);
      helper.once("error", () => resolve());
    });
    return new SpawnHelper(helper, server, dir, token);
  }

  get alive(): boolean {
    return this.#dead === undefined;
  }

  /** The helper's own pid: the parent of every child it starts. */
  get pid(): number {
    return this.#helper.pid ?? -1;
  }

  /** Starts `argv` in a new session; resolves once it runs, rejects when it could not start. */
  spawn(options: SpawnChildOptions): { started: Promise<number>; child: SpawnedChild } {
    const id = this.#nextId++;
    const streams = new Map<"stdin" | "stdout" | "stderr", PassThrough>([
      ["stdout", new PassThrough()],
      ["stderr", new PassThrough()],
    ]);
    if (options.stdin) streams.set("stdin", new PassThrough());
    let resolveStarted!: (pid: number) => void;
    let rejectStarted!: (error: Error) => void;
    const started = new Promise<number>((resolve, reject) => {
      resolveStarted = resolve;
      rejectStarted = reject;
    });
    let resolveExit!: Pending["exit"];
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>(
      (resolve) => {
        resolveExit = resolve;
      },
    );
    const child: SpawnedChild & { pid: number } = {
      pid: -1,
      stdin: streams.get("stdin") ?? null,
      stdout: streams.get("stdout")!,
      stderr: streams.get("stderr")!,
      exited,
    };
    if (this.#dead) {
      rejectStarted(this.#dead);
      resolveExit({ code: 127, signal: null, error: this.#dead });
      return { started, child };
    }
    for (const [name, stream] of streams) this.#routes.set(`${id} ${name}`, stream);
    this.#pending.set(id, {
      started: { resolve: resolveStarted, reject: rejectStarted },
      exit: resolveExit,
    });
    this.#holdOpen();
    void started.then(
      (pid) => {
        child.pid = pid;
      },
      () => undefined,
    );
    this.#helper.stdin!.write(
      `${JSON.stringify({ op: "spawn", id, argv: options.argv, env: options.env, cwd: options.cwd, stdin: options.stdin })}\n`,
    );
    return { started, child };
  }

  #onEvent(event: HelperEvent): void {
    const pending = this.#pending.get(event.id);
    if (!pending) return;
    if (event.ev === "spawned") {
      pending.started.resolve(event.pid);
    } else if (event.ev === "error") {
      this.#pending.delete(event.id);
      const error = Object.assign(new Error(event.message), { errno: event.errno });
      pending.started.reject(error);
      // No connection will come for its streams: end them.
      for (const name of STREAMS) {
        const route = `${event.id} ${name}`;
        this.#routes.get(route)?.end();
        this.#routes.delete(route);
      }
      pending.exit({ code: 127, signal: null, error });
    } else {
      this.#pending.delete(event.id);
      pending.exit({ code: event.code, signal: event.signal === null ? null : signalName(event.signal) });
    }
    this.#holdOpen();
  }

  /** A stream connection from the helper: "TOKEN ID STREAM\n", then the child's bytes. */
  #onConnection(socket: Socket): void {
    let header = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), CONNECT_DEADLINE_MS);
    timer.unref();
    const onData = (chunk: Buffer) => {
      header = Buffer.concat([header, chunk]);
      const newline = header.indexOf(10);
      if (newline < 0) {
        if (header.length > MAX_HEADER_BYTES) socket.destroy();
        return;
      }
      socket.off("data", onData);
      clearTimeout(timer);
      const [token, idText, name] = header.subarray(0, newline).toString("utf8").split(" ");
      // The child may have exited already: its route stays until its connections are attached.
      const route = `${idText} ${name}`;
      const stream = token === this.#token ? this.#routes.get(route) : undefined;
      if (!stream) {
        socket.destroy();
        return;
      }
      this.#routes.delete(route);
      this.#holdOpen();
      const rest = header.subarray(newline + 1);
      if (name === "stdin") {
        // runcell writes, the child reads.
        stream.pipe(socket);
        socket.on("error", () => undefined);
        socket.resume();
        return;
      }
      if (rest.length > 0) stream.write(rest);
      socket.pipe(stream);
      socket.on("end", () => socket.end());
      socket.on("error", () => stream.end());
    };
    socket.on("data", onData);
    socket.on("error", () => undefined);
  }

  #close(): void {
    this.#server.close();
    rmSync(this.#dir, { recursive: true, force: true });
    process.off("exit", this.#removeDir);
  }

  /** The socket's directory goes with runcell's process, even without dispose(). */
  readonly #removeDir = () => rmSync(this.#dir, { recursive: true, force: true });

  /** Where runcell listens for its children's stdio connections. */
  get socketPath(): string {
    return join(this.#dir, "s");
  }

  /** Stops the helper (children it started are not affected). */
  dispose(): void {
    this.#helper.stdin?.end();
    this.#close();
  }
}

function signalName(number: number): NodeJS.Signals {
  const entry = Object.entries(constants.signals).find(([, value]) => value === number);
  return (entry?.[0] ?? "SIGKILL") as NodeJS.Signals;
}
