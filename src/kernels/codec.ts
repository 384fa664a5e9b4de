import { randomUUID } from "node:crypto";
import type { Channel, JupyterMessage, MessageHeader } from "./messages.js";
import { PROTOCOL_VERSION } from "./messages.js";
import type { MessageSigner } from "./signer.js";

/** The frame that separates routing identities from the signed message. */
export const DELIMITER = Buffer.from("<IDS|MSG>", "latin1");

/** Why an inbound multipart message was dropped. */
export type RejectReason =
  "no_delimiter" | "too_few_frames" | "bad_signature" | "replayed" | "bad_json" | "bad_header" | "too_large";

export type DecodeResult =
  | { ok: true; message: JupyterMessage }
  | {
      ok: false;
      reason: RejectReason;
      detail: string;
      /** For `too_large`: the request the dropped message answered, read from its small header frames. */
      parentMsgId?: string;
      msgType?: string;
      bytes?: number;
    };

export interface EncodeOptions {
  channel: Channel;
  msgType: string;
  content: unknown;
  session: string;
  username?: string;
  parentHeader?: Partial<MessageHeader>;
  metadata?: Record<string, unknown>;
  /** Routing identities to prefix (needed only by ROUTER-side peers such as the fake kernel). */
  identities?: Buffer[];
  msgId?: string;
  buffers?: Buffer[];
}

/**
 * Remembers the signatures of recent messages so a replayed one is rejected. Bounded: when
 * full, the oldest half is forgotten (the same policy as jupyter_client's digest history).
 */
export class ReplayGuard {
  readonly #seen = new Set<string>();
  constructor(readonly capacity = 65_536) {}

  /** Returns false if `signature` was seen before; records it otherwise. */
  admit(signature: string): boolean {
    if (this.#seen.has(signature)) return false;
    this.#seen.add(signature);
    if (this.#seen.size > this.capacity) {
      let drop = this.#seen.size >> 1;
      for (const old of this.#seen) {
        if (drop-- <= 0) break;
        this.#seen.delete(old);
      }
    }
    return true;
  }
}

/** Builds a header for a new message. */
export function newHeader(
  msgType: string,
  session: string,
  username = "runcell",
  msgId?: string,
): MessageHeader {
  return {
    msg_id: msgId ?? randomUUID(),
    session,
    username,
    date: new Date().toISOString(),
    msg_type: msgType,
    version: PROTOCOL_VERSION,
  };
}

/** Serialises and signs a message into ZeroMQ frames. Returns the frames and the header used. */
export function encodeMessage(
  signer: MessageSigner,
  options: EncodeOptions,
): { frames: Buffer[]; header: MessageHeader } {
  const header = newHeader(options.msgType, options.session, options.username, options.msgId);
  const parts = [
    Buffer.from(JSON.stringify(header)),
    Buffer.from(JSON.stringify(options.parentHeader ?? {})),
    Buffer.from(JSON.stringify(options.metadata ?? {})),
    Buffer.from(JSON.stringify(options.content ?? {})),
  ];
  const signature = Buffer.from(signer.sign(parts), "latin1");
  const frames = [...(options.identities ?? []), DELIMITER, signature, ...parts, ...(options.buffers ?? [])];
  return { frames, header };
}

export interface DecodeOptions {
  signer: MessageSigner;
  channel: Channel;
  replay?: ReplayGuard;
  /** Total bytes of all frames above which the message is dropped. */
  maxMessageBytes?: number;
}

function parseObject(frame: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(frame.toString("utf8"));
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Header frames are small; past this they are not even looked at in an oversize message. */
const PEEK_LIMIT = 64 * 1024;

/**
 * Reads msg_type and the parent's msg_id from an oversize message's header frames, so the drop
 * can be reported to the execution it belongs to. Unverified: used only to place a notice.
 */
function peekHeaders(
  frames: readonly Buffer[],
  delimiterAt: number,
): { parentMsgId?: string; msgType?: string } {
  if (delimiterAt < 0 || frames.length - delimiterAt < 6) return {};
  const header = frames[delimiterAt + 2]!;
  const parent = frames[delimiterAt + 3]!;
  if (header.length > PEEK_LIMIT || parent.length > PEEK_LIMIT) return {};
  const msgType = parseObject(header)?.msg_type;
  const parentMsgId = parseObject(parent)?.msg_id;
  return {
    ...(typeof msgType === "string" ? { msgType } : {}),
    ...(typeof parentMsgId === "string" ? { parentMsgId } : {}),
  };
}

/**
 * Validates and decodes one inbound multipart message. Never throws: a malformed, unsigned,
 * wrongly signed or replayed message comes back as `{ok: false, reason}` so the caller can
 * count it and keep the socket working.
 */
export function decodeMessage(frames: readonly Buffer[], options: DecodeOptions): DecodeResult {
  let delimiterAt = -1;
  for (let i = 0; i < frames.length; i++) {
    if (frames[i]!.equals(DELIMITER)) {
      delimiterAt = i;
      break;
    }
  }
  if (options.maxMessageBytes !== undefined) {
    let total = 0;
    for (const frame of frames) total += frame.length;
    if (total > options.maxMessageBytes) {
      return {
        ok: false,
        reason: "too_large",
        detail: `${total} bytes > ${options.maxMessageBytes}`,
        bytes: total,
        ...peekHeaders(frames, delimiterAt),
      };
    }
  }
  if (delimiterAt < 0)
    return { ok: false, reason: "no_delimiter", detail: `${frames.length} frames, no <IDS|MSG>` };
  if (frames.length - delimiterAt < 6) {
    return {
      ok: false,
      reason: "too_few_frames",
      detail: `${frames.length - delimiterAt - 1} frames after <IDS|MSG>`,
    };
  }
  const signature = frames[delimiterAt + 1]!;
  const parts = frames.slice(delimiterAt + 2, delimiterAt + 6);
  if (!options.signer.verify(signature, parts)) {
    return {
      ok: false,
      reason: "bad_signature",
      detail: signature.length === 0 ? "unsigned" : "HMAC mismatch",
    };
  }
  if (options.signer.enabled && options.replay && !options.replay.admit(signature.toString("latin1"))) {
    return { ok: false, reason: "replayed", detail: "signature seen before" };
  }
  const [headerFrame, parentFrame, metadataFrame, contentFrame] = parts as [Buffer, Buffer, Buffer, Buffer];
  const header = parseObject(headerFrame);
  const parent = parseObject(parentFrame);
  const metadata = parseObject(metadataFrame);
  const content = parseObject(contentFrame);
  if (!header || !parent || !metadata || !content) {
    return { ok: false, reason: "bad_json", detail: "a message frame is not a JSON object" };
  }
  if (typeof header.msg_id !== "string" || typeof header.msg_type !== "string") {
    return { ok: false, reason: "bad_header", detail: "header lacks msg_id or msg_type" };
  }
  return {
    ok: true,
    message: {
      channel: options.channel,
      header: header as unknown as MessageHeader,
      parent_header: parent as Partial<MessageHeader>,
      metadata,
      content,
      buffers: frames.slice(delimiterAt + 6) as Buffer[],
    },
  };
}
