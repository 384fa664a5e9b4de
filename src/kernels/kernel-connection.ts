import { randomUUID } from "node:crypto";
import * as zmq from "zeromq";
import { type DecodeResult, decodeMessage, encodeMessage, type RejectReason, ReplayGuard } from "./codec.js";
import { type ConnectionInfo, endpoint } from "./connection.js";
import type { Channel, JupyterMessage, MessageHeader } from "./messages.js";
import { MessageSigner } from "./signer.js";

/** Receives every valid inbound message, on any channel. */
export type MessageListener = (message: JupyterMessage) => void;

/** Counts of inbound traffic, for diagnostics and the metrics endpoint. */
export interface ConnectionCounters {
  received: number;
  rejected: Record<RejectReason, number>;
}

/** A dropped inbound message: where, why, and (for oversize ones) whose output it was. */
export interface RejectedMessage {
  channel: Channel;
  reason: RejectReason;
  detail: string;
  parentMsgId?: string;
  msgType?: string;
  bytes?: number;
}

export interface KernelConnectionOptions {
  /** Messages above this total size are dropped (counted as `too_large`) when decoded. */
  maxMessageBytes: number;
  /** Called for each dropped message (once per message; never throws into the socket loop). */
  onReject?: (rejected: RejectedMessage) => void;
}

/** zeromq.js allows one send in flight per socket; this queues the rest in order. */
class SerialSender {
  #tail: Promise<unknown> = Promise.resolve();
  constructor(readonly socket: zmq.Dealer) {}
  send(frames: Buffer[]): Promise<void> {
    const next = this.#tail.then(() => this.socket.send(frames));
    this.#tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * The four message sockets to one kernel, signed with its key. Inbound messages are validated;
 * anything malformed, unsigned, wrongly signed or replayed is dropped and counted, and the
 * socket keeps working.
 */
export class KernelConnection {
  readonly session = randomUUID();
  readonly counters: ConnectionCounters = {
    received: 0,
    rejected: {
      no_delimiter: 0,
      too_few_frames: 0,
      bad_signature: 0,
      replayed: 0,
      bad_json: 0,
      bad_header: 0,
      too_large: 0,
    },
  };
  readonly #signer: MessageSigner;
  readonly #replay = new ReplayGuard();
  readonly #shell: zmq.Dealer;
  readonly #control: zmq.Dealer;
  readonly #stdin: zmq.Dealer;
  readonly #iopub: zmq.Subscriber;
  readonly #senders: Record<Exclude<Channel, "iopub">, SerialSender>;
  readonly #listeners = new Set<MessageListener>();
  readonly #options: KernelConnectionOptions;
  #closed = false;
  /**
   * Settles once the stdin socket has completed its handshake with the kernel. Until then the
   * kernel's stdin ROUTER does not know our routing id and silently drops an input_request.
   */
  readonly stdinReady: Promise<void>;

  constructor(info: ConnectionInfo, options: KernelConnectionOptions) {
    this.#options = options;
    this.#signer = new MessageSigner(info.key, info.signature_scheme);
    // Shell and stdin share one routing id: the kernel sends input_request to the stdin socket
    // whose identity matches the shell socket that sent the execute_request.
    const routingId = `runcell-${this.session}`;
    // No ZeroMQ maxMessageSize: ZeroMQ enforces it by dropping the connection, which loses the
    // messages that follow (an execution's idle) and hangs it. decode() drops oversized ones instead.
    // The kernel binds its sockets a moment after we connect; ZeroMQ's default 100 ms between
    // reconnection attempts would add up to that much to every kernel start.
    const common = { linger: 0, reconnectInterval: 10, reconnectMaxInterval: 200 };
    this.#shell = new zmq.Dealer({ ...common, routingId });
    this.#stdin = new zmq.Dealer({ ...common, routingId });
    this.#control = new zmq.Dealer({ ...common, routingId: `${routingId}-control` });
    this.#iopub = new zmq.Subscriber({ ...common, receiveHighWaterMark: 0 });
    this.#iopub.subscribe();
    this.stdinReady = new Promise((resolve) => {
      this.#stdin.events.on("handshake", () => resolve());
    });
    this.#shell.connect(endpoint(info, info.shell_port));
    this.#stdin.connect(endpoint(info, info.stdin_port));
    this.#control.connect(endpoint(info, info.control_port));
    this.#iopub.connect(endpoint(info, info.iopub_port));
    this.#senders = {
      shell: new SerialSender(this.#shell),
      stdin: new SerialSender(this.#stdin),
      control: new SerialSender(this.#control),
    };
    void this.#receiveLoop(this.#shell, "shell");
    void this.#receiveLoop(this.#stdin, "stdin");
    void this.#receiveLoop(this.#control, "control");
    void this.#receiveLoop(this.#iopub, "iopub");
  }

  /** Registers a listener for every valid inbound message; returns the unsubscribe function. */
  onMessage(listener: MessageListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Signs and sends one message; resolves with its header once ZeroMQ has queued it. */
  async send(
    channel: Exclude<Channel, "iopub">,
    msgType: string,
    content: unknown,
    options: {
      parentHeader?: Partial<MessageHeader>;
      metadata?: Record<string, unknown>;
      msgId?: string;
    } = {},
  ): Promise<MessageHeader> {
    if (this.#closed) throw new Error("connection closed");
    const { frames, header } = encodeMessage(this.#signer, {
      channel,
      msgType,
      content,
      session: this.session,
      parentHeader: options.parentHeader,
      metadata: options.metadata,
      msgId: options.msgId,
    });
    await this.#senders[channel].send(frames);
    return header;
  }

  /** Decodes frames with this connection's key (exposed for tests of the validation path). */
  decode(frames: Buffer[], channel: Channel): DecodeResult {
    return decodeMessage(frames, {
      signer: this.#signer,
      channel,
      replay: this.#replay,
      maxMessageBytes: this.#options.maxMessageBytes,
    });
  }

  async #receiveLoop(socket: zmq.Dealer | zmq.Subscriber, channel: Channel): Promise<void> {
    try {
      for await (const frames of socket) {
        const result = this.decode(frames as Buffer[], channel);
        if (!result.ok) {
          this.counters.rejected[result.reason]++;
          try {
            const { ok: _ok, ...rejected } = result;
            this.#options.onReject?.({ channel, ...rejected });
          } catch {
            // a faulty listener must not stop the socket
          }
          continue;
        }
        this.counters.received++;
        for (const listener of this.#listeners) {
          try {
            listener(result.message);
          } catch {
            // listeners own their errors; one must not starve the others
          }
        }
      }
    } catch (error) {
      if (!this.#closed) {
        this.#options.onReject?.({
          channel,
          reason: "bad_header",
          detail: `socket error: ${(error as Error).message}`,
        });
      }
    }
  }

  /** Closes all sockets at once (linger 0: nothing is flushed). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    for (const socket of [this.#shell, this.#stdin, this.#control, this.#iopub]) {
      try {
        socket.close();
      } catch {
        // already closed
      }
    }
  }
}
