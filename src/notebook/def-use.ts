import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { AbortedError, InvalidArgumentError, RuncellError, TimeoutError } from "../errors.js";
import { ManagedProcess, TailBuffer } from "../sandbox/managed-process.js";
import { abortReason, deadlineSignal } from "../util/abort.js";

const HELPER_SOURCE = fileURLToPath(new URL("../../assets/def-use.py", import.meta.url));
const DEFAULT_PYTHON = "/usr/bin/python3";
const DEFAULT_TIMEOUT_MS = 10_000;
/** Largest block analysed, in UTF-8 bytes; assets/def-use.py enforces the same cap. */
export const MAX_DEF_USE_SOURCE_BYTES = 1 << 20;
/** Longest reply line accepted: a reply lists names taken from at most 1 MiB of source. */
const MAX_REPLY_CHARS = 16 << 20;
/** Requests in flight at once, and their total size (each is kept until answered, to re-send
 * it to a restarted helper); beyond either, analyze() rejects with DEF_USE_BUSY. */
const MAX_PENDING = 256;
const MAX_PENDING_CHARS = 64 << 20;
/** Results kept for sources seen before, least recently used evicted first beyond either cap;
 * the size of an entry is the length of its names. */
const CACHE_ENTRIES = 256;
const CACHE_CHARS = 8 << 20;
const STDERR_TAIL_BYTES = 8 * 1024;
/** How long stdout and stderr may take to end once the helper exited (a child could hold them open). */
const OUTPUT_DRAIN_MS = 2_000;
/** How long a helper that is told to stop may take before it is killed. */
const DISPOSE_GRACE_MS = 1_000;

/** The names a Python block binds at module level, and those it reads from earlier blocks. */
export interface DefUse {
  /** Sorted, de-duplicated. */
  defines: string[];
  /** Sorted, de-duplicated; builtins and names the block binds before reading them excluded. */
  uses: string[];
  /** Why the block could not be analysed ("SyntaxError: … (line N)"); the lists are then empty. */
  error: string | null;
}

export interface PythonAnalyzerOptions {
  /** The interpreter running assets/def-use.py. Default: /usr/bin/python3. */
  python?: string;
  /** Deadline of each analysis, including starting the helper if needed. Default: 10 000 ms. */
  timeoutMs?: number;
}

interface Reply {
  id: number;
  defines: string[];
  uses: string[];
  error: string | null;
}

/** One analyze() call, from dispatch until it settles. */
interface Request {
  readonly id: number;
  readonly line: string;
  settled: boolean;
  /** The helper it was sent to, once sent. */
  sentTo: Helper | undefined;
  resolve(result: DefUse): void;
  reject(error: Error): void;
}

/**
 * Reports which names a Python block defines and uses, with Python's own `ast` and `symtable`
 * run by a long-lived helper process (assets/def-use.py). The helper starts at the first
 * analysis, serves requests pipelined by id, and is restarted by the next analysis if it dies.
 * One owner calls dispose().
 */
export class PythonAnalyzer {
  readonly #python: string;
  readonly #timeoutMs: number;
  /** Requests not yet settled, by id. */
  readonly #requests = new Map<number, Request>();
  #pendingChars = 0;
  readonly #cache = new Map<string, { result: Readonly<DefUse>; chars: number }>();
  #cacheChars = 0;
  #helper: Promise<Helper> | undefined;
  #current: Helper | undefined;
  #nextId = 1;
  #disposing: Promise<void> | undefined;

  constructor(options: PythonAnalyzerOptions = {}) {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new InvalidArgumentError(
        "INVALID_TIMEOUT",
        `timeoutMs must be a positive number of milliseconds, not ${timeoutMs}`,
      );
    }
    this.#python = options.python ?? DEFAULT_PYTHON;
    this.#timeoutMs = timeoutMs;
  }

  /** The helper's process id while it runs (tests kill it); undefined before it starts or once it died. */
  get pid(): number | undefined {
    const helper = this.#current;
    return helper && !helper.dead && helper.pid > 0 ? helper.pid : undefined;
  }

  /**
   * Analyses one block. Resolves with its names, or with `error` set when it does not parse or
   * exceeds 1 MiB; rejects with a TimeoutError past the deadline (the helper is then
   * restarted), an AbortedError when `signal` fires, or a RuncellError when the helper dies or
   * cannot start.
   */
  analyze(source: string, signal?: AbortSignal): Promise<DefUse> {
    if (this.#disposing) {
      return Promise.reject(disposedError());
    }
    if (Buffer.byteLength(source, "utf8") > MAX_DEF_USE_SOURCE_BYTES) {
      return Promise.resolve({
        defines: [],
        uses: [],
        error: `the block is larger than ${MAX_DEF_USE_SOURCE_BYTES} bytes: it was not analysed`,
      });
    }
    const key = createHash("sha256").update(source).digest("hex");
    const cached = this.#cache.get(key);
    if (cached) {
      this.#cache.delete(key);
      this.#cache.set(key, cached);
      return Promise.resolve(copy(cached.result));
    }
    const deadline = deadlineSignal(this.#timeoutMs, signal);
    const what = `def-use analysis (deadline ${this.#timeoutMs} ms)`;
    if (deadline.aborted) return Promise.reject(abortError(deadline, what));
    const id = this.#nextId++;
    const line = `${JSON.stringify({ id, source })}\n`;
    if (
      this.#requests.size >= MAX_PENDING ||
      (this.#requests.size > 0 && this.#pendingChars + line.length > MAX_PENDING_CHARS)
    ) {
      return Promise.reject(
        new RuncellError("DEF_USE_BUSY", "too many analyses are pending: wait for some to finish"),
      );
    }
    return new Promise<DefUse>((resolve, reject) => {
      const onAbort = () => {
        const error = abortError(deadline, what);
        request.reject(error);
        // The helper answers in order: one stuck on a block would hold up every later one.
        if (error instanceof TimeoutError) request.sentTo?.stuckOn(id);
      };
      const settle = () => {
        request.settled = true;
        this.#requests.delete(id);
        this.#pendingChars -= line.length;
        deadline.removeEventListener("abort", onAbort);
      };
      const request: Request = {
        id,
        line,
        settled: false,
        sentTo: undefined,
        resolve: (result) => {
          if (request.settled) return;
          settle();
          this.#remember(key, result);
          resolve(copy(result));
        },
        reject: (error) => {
          if (request.settled) return;
          settle();
          reject(error);
        },
      };
      this.#requests.set(id, request);
      this.#pendingChars += line.length;
      deadline.addEventListener("abort", onAbort, { once: true });
      this.#dispatch(request);
    });
  }

  /** Sends `request` to the running helper, starting one first if there is none. */
  #dispatch(request: Request): void {
    const helper = this.#startedHelper();
    helper.then(
      (running) => {
        if (!request.settled) running.send(request);
      },
      (error: unknown) => request.reject(error instanceof Error ? error : new Error(String(error))),
    );
  }

  #startedHelper(): Promise<Helper> {
    if (this.#disposing) return Promise.reject(disposedError());
    const current = this.#helper;
    if (current) {
      return current.then((helper) => {
        if (!helper.dead) return helper;
        if (this.#helper === current) this.#helper = undefined;
        return this.#startedHelper();
      });
    }
    const starting = Helper.start(this.#python, (helper, retry) => this.#onHelperExit(helper, retry));
    this.#helper = starting;
    starting.then(
      (helper) => {
        if (this.#helper === starting) this.#current = helper;
      },
      () => {
        if (this.#helper === starting) this.#helper = undefined;
      },
    );
    return starting;
  }

  /** Requests a helper held when it exited: re-sent when it was killed for being stuck. */
  #onHelperExit(helper: Helper, retry: readonly Request[]): void {
    if (this.#current === helper) this.#current = undefined;
    if (this.#disposing) return;
    for (const request of retry) this.#dispatch(request);
  }

  #remember(key: string, result: DefUse): void {
    const chars = [...result.defines, ...result.uses].reduce((sum, name) => sum + name.length + 1, 0);
    if (chars > CACHE_CHARS / 4 || this.#cache.has(key)) return;
    this.#cache.set(key, { result: Object.freeze(copy(result)), chars });
    this.#cacheChars += chars;
    while (this.#cache.size > CACHE_ENTRIES || this.#cacheChars > CACHE_CHARS) {
      const [oldest, entry] = this.#cache.entries().next().value!;
      this.#cache.delete(oldest);
      this.#cacheChars -= entry.chars;
    }
  }

  /** Stops the helper and rejects pending analyses; later calls reject. Idempotent. */
  dispose(): Promise<void> {
    this.#disposing ??= (async () => {
      const disposed = disposedError();
      for (const request of [...this.#requests.values()]) request.reject(disposed);
      const helper = this.#helper;
      this.#helper = undefined;
      this.#current = undefined;
      await helper?.then(
        (running) => running.dispose(),
        () => undefined,
      );
    })();
    return this.#disposing;
  }
}

/** One run of assets/def-use.py. */
class Helper {
  readonly #process: ManagedProcess;
  readonly #python: string;
  /** Sent and not yet answered, in the order the helper answers them (some may be settled). */
  readonly #sent = new Map<number, Request>();
  readonly #stderr = new TailBuffer(STDERR_TAIL_BYTES);
  readonly #decoder = new TextDecoder("utf-8");
  #buffered = "";
  /** Why the helper is gone; set once, when it exits or is killed. */
  #dead: Error | undefined;
  /** Killed because a request timed out: the others it held are re-sent to a new helper. */
  #killedStuck = false;

  private constructor(
    process: ManagedProcess,
    python: string,
    onExit: (helper: Helper, retry: Request[]) => void,
  ) {
    this.#process = process;
    this.#python = python;
    const stdout = process.stdout!;
    stdout.on("data", (chunk: Buffer) => this.#onData(chunk));
    process.stderr!.on("data", (chunk: Buffer) => this.#stderr.push(chunk));
    process.stderr!.on("error", () => undefined);
    // Replies and the last words on stderr written just before an exit may still be on their
    // way when it is reported.
    const drained = Promise.all([streamEnded(stdout), streamEnded(process.stderr!)]);
    void process.exited.then(async ({ code, signal }) => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        drained,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, OUTPUT_DRAIN_MS);
        }),
      ]);
      clearTimeout(timer);
      this.#onData(undefined);
      this.#kill(this.#deathError(code, signal));
      const retry = this.#killedStuck ? [...this.#sent.values()].filter((request) => !request.settled) : [];
      if (!this.#killedStuck) for (const request of this.#sent.values()) request.reject(this.#dead!);
      this.#sent.clear();
      onExit(this, retry);
    });
  }

  static async start(python: string, onExit: (helper: Helper, retry: Request[]) => void): Promise<Helper> {
    const process = await ManagedProcess.spawn({
      argv: [python, "-I", HELPER_SOURCE],
      env: { PATH: "/usr/bin:/bin", LANG: "C.UTF-8" },
      output: "pipe",
      input: "pipe",
    });
    return new Helper(process, python, onExit);
  }

  get dead(): boolean {
    return this.#dead !== undefined;
  }

  get pid(): number {
    return this.#process.pid;
  }

  send(request: Request): void {
    if (this.#dead) {
      request.reject(this.#dead);
      return;
    }
    request.sentTo = this;
    this.#sent.set(request.id, request);
    this.#process.stdin!.write(request.line);
  }

  /** `id` timed out while the helper still held it: kill the helper, re-send the others. */
  stuckOn(id: number): void {
    if (this.#dead || !this.#sent.has(id)) return;
    this.#killedStuck = true;
    this.#kill(
      new RuncellError(
        "DEF_USE_HELPER_STUCK",
        "the def-use helper was restarted after an analysis timed out",
      ),
    );
  }

  /** Splits stdout into lines; `chunk` undefined flushes the decoder once stdout ended. */
  #onData(chunk: Buffer | undefined): void {
    if (this.#dead) return;
    this.#buffered += chunk ? this.#decoder.decode(chunk, { stream: true }) : this.#decoder.decode();
    for (let newline = this.#buffered.indexOf("\n"); newline >= 0; newline = this.#buffered.indexOf("\n")) {
      const line = this.#buffered.slice(0, newline);
      this.#buffered = this.#buffered.slice(newline + 1);
      if (line.trim()) this.#onLine(line);
      if (this.#dead) return;
    }
    if (this.#buffered.length > MAX_REPLY_CHARS) {
      // Overflow policy: the stream can no longer be trusted; restart the helper.
      this.#protocolError(`a reply line longer than ${MAX_REPLY_CHARS} characters`);
    }
  }

  #onLine(line: string): void {
    let reply: Reply;
    try {
      reply = parseReply(JSON.parse(line));
    } catch {
      this.#protocolError(`an invalid reply: ${line.slice(0, 200)}`);
      return;
    }
    const request = this.#sent.get(reply.id);
    if (!request) return; // a reply to a request that was never sent (id null): nothing waits for it
    this.#sent.delete(reply.id);
    request.resolve({ defines: reply.defines, uses: reply.uses, error: reply.error });
  }

  #protocolError(what: string): void {
    this.#kill(new RuncellError("DEF_USE_PROTOCOL", `the def-use helper wrote ${what}; it is restarted`));
  }

  /** Marks the helper dead with `reason` and kills its process group; exit handling follows. */
  #kill(reason: Error): void {
    if (this.#dead) return;
    this.#dead = reason;
    this.#buffered = "";
    this.#process.signalGroup("SIGKILL");
  }

  #deathError(code: number | null, signal: NodeJS.Signals | null): Error {
    const stderr = `${this.#process.stderrTail()}${this.#stderr.toString()}`.trim();
    const how = signal ?? `code ${code}`;
    const message =
      code === 127
        ? `cannot start the def-use helper (${this.#python}): install python3 (apt-get install python3) or pass the python option`
        : `the def-use helper exited (${how}) before answering; the next analysis restarts it`;
    return new RuncellError("DEF_USE_HELPER_DIED", stderr ? `${message}: ${stderr.slice(-1000)}` : message, {
      data: { exitCode: code, signal, stderr },
    });
  }

  async dispose(): Promise<void> {
    this.#process.stdin?.end();
    await this.#process.dispose(DISPOSE_GRACE_MS);
  }
}

function parseReply(value: unknown): Reply {
  const reply = value as Partial<Reply> | null;
  const names = (list: unknown): list is string[] =>
    Array.isArray(list) && list.every((name) => typeof name === "string");
  if (
    typeof reply !== "object" ||
    reply === null ||
    !(typeof reply.id === "number" || reply.id === null) ||
    !names(reply.defines) ||
    !names(reply.uses) ||
    !(typeof reply.error === "string" || reply.error === null)
  ) {
    throw new Error("not a def-use reply");
  }
  // The helper sorts; de-duplicating here keeps the contract whatever the helper does.
  return {
    id: reply.id ?? -1,
    defines: [...new Set(reply.defines)].sort(),
    uses: [...new Set(reply.uses)].sort(),
    error: reply.error,
  };
}

/** TimeoutError past a deadline, AbortedError when the caller aborted without a reason of its own. */
function abortError(signal: AbortSignal, what: string): Error {
  const error = abortReason(signal, what);
  return error.name === "AbortError" ? new AbortedError(`${what} was aborted`) : error;
}

function disposedError(): RuncellError {
  return new RuncellError("DEF_USE_DISPOSED", "the analyzer was disposed: create a new one");
}

function copy(result: Readonly<DefUse>): DefUse {
  return { defines: [...result.defines], uses: [...result.uses], error: result.error };
}

/** Settles once `stream` has ended, closed or failed. */
function streamEnded(stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise<void>((resolve) => {
    stream.once("end", resolve);
    stream.once("close", resolve);
    stream.once("error", () => resolve());
  });
}
