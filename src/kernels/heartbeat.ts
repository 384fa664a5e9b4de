import * as zmq from "zeromq";

export interface HeartbeatOptions {
  /** Time between pings, in ms. Default 3000. */
  intervalMs?: number;
  /** How long one ping may wait for its echo, in ms. Default 3000. */
  timeoutMs?: number;
  /** Consecutive missed echoes before the kernel is declared dead. Default 3. */
  maxMissed?: number;
}

/**
 * Pings the kernel's heartbeat socket and reports when it stops echoing. A REQ socket that
 * misses a reply is stuck in its send/receive lock-step, so each miss gets a fresh socket.
 */
export class Heartbeat {
  readonly #endpoint: string;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #maxMissed: number;
  readonly #onLost: (missed: number) => void;
  #socket: zmq.Request | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #missed = 0;

  constructor(endpoint: string, onLost: (missed: number) => void, options: HeartbeatOptions = {}) {
    this.#endpoint = endpoint;
    this.#onLost = onLost;
    this.#intervalMs = options.intervalMs ?? 3000;
    this.#timeoutMs = options.timeoutMs ?? 3000;
    this.#maxMissed = options.maxMissed ?? 3;
  }

  start(): void {
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#beat(), this.#intervalMs);
    this.#timer.unref();
  }

  #freshSocket(): zmq.Request {
    this.#socket?.close();
    const socket = new zmq.Request({
      linger: 0,
      receiveTimeout: this.#timeoutMs,
      sendTimeout: this.#timeoutMs,
    });
    socket.connect(this.#endpoint);
    this.#socket = socket;
    return socket;
  }

  async #beat(): Promise<void> {
    const socket = this.#socket ?? this.#freshSocket();
    try {
      await socket.send("ping");
      await socket.receive();
      this.#missed = 0;
    } catch {
      if (this.#stopped) return;
      this.#missed++;
      this.#freshSocket();
      if (this.#missed >= this.#maxMissed) {
        this.stop();
        this.#onLost(this.#missed);
        return;
      }
    }
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    try {
      this.#socket?.close();
    } catch {
      // closed already
    }
    this.#socket = undefined;
  }
}
