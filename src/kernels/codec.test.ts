import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  DELIMITER,
  type DecodeResult,
  decodeMessage,
  encodeMessage,
  newHeader,
  ReplayGuard,
} from "./codec.js";
import { PROTOCOL_VERSION } from "./messages.js";
import { MessageSigner } from "./signer.js";

const KEY = "a-test-key";
const signer = new MessageSigner(KEY);

/** Signs four raw frames independently of the code under test. */
function rawSigned(header: string, parent = "{}", metadata = "{}", content = "{}"): Buffer[] {
  const parts = [header, parent, metadata, content].map((p) => Buffer.from(p));
  const hmac = createHmac("sha256", KEY);
  for (const part of parts) hmac.update(part);
  return [DELIMITER, Buffer.from(hmac.digest("hex")), ...parts];
}

function rejection(result: DecodeResult): { reason: string; detail: string } {
  if (result.ok) throw new Error(`expected a rejection, got ${result.message.header.msg_type}`);
  return { reason: result.reason, detail: result.detail };
}

describe("newHeader", () => {
  it("fills every header field", () => {
    const header = newHeader("execute_request", "sess", "me", "id-1");
    expect(header).toMatchObject({
      msg_id: "id-1",
      session: "sess",
      username: "me",
      msg_type: "execute_request",
      version: PROTOCOL_VERSION,
    });
    expect(Number.isNaN(Date.parse(header.date))).toBe(false);
    expect(newHeader("x", "s").msg_id).not.toBe(newHeader("x", "s").msg_id);
  });
});

describe("encodeMessage / decodeMessage", () => {
  it("round-trips a message with identities, parent, metadata and buffers", () => {
    const { frames, header } = encodeMessage(signer, {
      channel: "shell",
      msgType: "execute_request",
      content: { code: "1+1" },
      session: "s1",
      parentHeader: { msg_id: "p1", msg_type: "x" },
      metadata: { m: true },
      identities: [Buffer.from("peer")],
      buffers: [Buffer.from([1, 2, 3])],
    });
    expect(frames[0]!.toString()).toBe("peer");
    expect(frames[1]!.equals(DELIMITER)).toBe(true);
    const result = decodeMessage(frames, { signer, channel: "shell" });
    if (!result.ok) throw new Error(result.detail);
    expect(result.message.channel).toBe("shell");
    expect(result.message.header).toEqual(header);
    expect(result.message.parent_header).toEqual({ msg_id: "p1", msg_type: "x" });
    expect(result.message.metadata).toEqual({ m: true });
    expect(result.message.content).toEqual({ code: "1+1" });
    expect(result.message.buffers.map((b) => [...b])).toEqual([[1, 2, 3]]);
  });

  it("produces a signature the Jupyter way (HMAC-SHA256 over the four JSON frames)", () => {
    const { frames } = encodeMessage(signer, { channel: "iopub", msgType: "m", content: {}, session: "s" });
    const hmac = createHmac("sha256", KEY);
    for (const part of frames.slice(2, 6)) hmac.update(part);
    expect(frames[1]!.toString()).toBe(hmac.digest("hex"));
  });

  it("accepts a message signed independently", () => {
    const frames = rawSigned(JSON.stringify({ msg_id: "m1", msg_type: "status" }), "{}", "{}", '{"x":1}');
    const result = decodeMessage(frames, { signer, channel: "iopub" });
    expect(result.ok && result.message.content).toEqual({ x: 1 });
  });

  it("rejects a wrong signature, and an unsigned message, when a key is set", () => {
    const frames = rawSigned(JSON.stringify({ msg_id: "m1", msg_type: "status" }));
    const wrong = [...frames];
    wrong[1] = Buffer.from("0".repeat(64));
    expect(rejection(decodeMessage(wrong, { signer, channel: "iopub" }))).toEqual({
      reason: "bad_signature",
      detail: "HMAC mismatch",
    });
    const unsigned = [...frames];
    unsigned[1] = Buffer.alloc(0);
    expect(rejection(decodeMessage(unsigned, { signer, channel: "iopub" }))).toEqual({
      reason: "bad_signature",
      detail: "unsigned",
    });
    const otherKey = encodeMessage(new MessageSigner("other"), {
      channel: "shell",
      msgType: "m",
      content: {},
      session: "s",
    }).frames;
    expect(rejection(decodeMessage(otherKey, { signer, channel: "shell" })).reason).toBe("bad_signature");
  });

  it("rejects a replayed message but accepts a fresh one", () => {
    const replay = new ReplayGuard();
    const { frames } = encodeMessage(signer, { channel: "iopub", msgType: "m", content: {}, session: "s" });
    expect(decodeMessage(frames, { signer, channel: "iopub", replay }).ok).toBe(true);
    expect(rejection(decodeMessage(frames, { signer, channel: "iopub", replay })).reason).toBe("replayed");
    const fresh = encodeMessage(signer, { channel: "iopub", msgType: "m", content: {}, session: "s" }).frames;
    expect(decodeMessage(fresh, { signer, channel: "iopub", replay }).ok).toBe(true);
  });

  it("does not record a wrongly signed message as seen (the genuine one still passes)", () => {
    const replay = new ReplayGuard();
    const { frames } = encodeMessage(signer, { channel: "iopub", msgType: "m", content: {}, session: "s" });
    const forged = [...frames];
    forged[5] = Buffer.from('{"evil":true}');
    expect(rejection(decodeMessage(forged, { signer, channel: "iopub", replay })).reason).toBe(
      "bad_signature",
    );
    expect(decodeMessage(frames, { signer, channel: "iopub", replay }).ok).toBe(true);
  });

  it("rejects zero frames and frames without a delimiter", () => {
    expect(rejection(decodeMessage([], { signer, channel: "shell" })).reason).toBe("no_delimiter");
    const noDelimiter = rawSigned(JSON.stringify({ msg_id: "m", msg_type: "t" })).slice(1);
    expect(rejection(decodeMessage(noDelimiter, { signer, channel: "shell" }))).toEqual({
      reason: "no_delimiter",
      detail: "5 frames, no <IDS|MSG>",
    });
  });

  it("rejects fewer than five frames after the delimiter", () => {
    const full = rawSigned(JSON.stringify({ msg_id: "m", msg_type: "t" }));
    for (let keep = 1; keep < full.length; keep++) {
      const truncated = full.slice(0, keep);
      expect(rejection(decodeMessage(truncated, { signer, channel: "iopub" }))).toEqual({
        reason: "too_few_frames",
        detail: `${keep - 1} frames after <IDS|MSG>`,
      });
    }
    expect(decodeMessage(full, { signer, channel: "iopub" }).ok).toBe(true);
  });

  it("rejects a correctly signed message whose frames are not JSON objects", () => {
    for (const frames of [
      rawSigned("not json"),
      rawSigned(JSON.stringify({ msg_id: "m", msg_type: "t" }), "[]"),
      rawSigned(JSON.stringify({ msg_id: "m", msg_type: "t" }), "{}", "null"),
      rawSigned(JSON.stringify({ msg_id: "m", msg_type: "t" }), "{}", "{}", '"text"'),
      rawSigned("[1,2]"),
    ]) {
      expect(rejection(decodeMessage(frames, { signer, channel: "shell" })).reason).toBe("bad_json");
    }
  });

  it("rejects a header without a string msg_id or msg_type", () => {
    for (const header of [{ msg_type: "t" }, { msg_id: "m" }, { msg_id: 7, msg_type: "t" }]) {
      const result = decodeMessage(rawSigned(JSON.stringify(header)), { signer, channel: "shell" });
      expect(rejection(result).reason).toBe("bad_header");
    }
  });

  it("rejects messages above maxMessageBytes, counting every frame", () => {
    const { frames } = encodeMessage(signer, {
      channel: "iopub",
      msgType: "m",
      content: {},
      session: "s",
      buffers: [Buffer.alloc(1000)],
    });
    const total = frames.reduce((sum, f) => sum + f.length, 0);
    expect(
      rejection(decodeMessage(frames, { signer, channel: "iopub", maxMessageBytes: total - 1 })),
    ).toEqual({
      reason: "too_large",
      detail: `${total} bytes > ${total - 1}`,
    });
    expect(decodeMessage(frames, { signer, channel: "iopub", maxMessageBytes: total }).ok).toBe(true);
  });

  it("keeps routing identities out of the message and finds the first delimiter", () => {
    const { frames } = encodeMessage(signer, {
      channel: "shell",
      msgType: "m",
      content: { ok: 1 },
      session: "s",
      identities: [Buffer.from("a"), Buffer.from("b")],
    });
    const result = decodeMessage(frames, { signer, channel: "shell" });
    expect(result.ok && result.message.content).toEqual({ ok: 1 });
    expect(result.ok && result.message.buffers).toEqual([]);
  });

  it("without a key accepts unsigned messages and skips replay detection", () => {
    const open = new MessageSigner("");
    const replay = new ReplayGuard();
    const { frames } = encodeMessage(open, { channel: "iopub", msgType: "m", content: {}, session: "s" });
    expect(frames[1]!.length).toBe(0);
    expect(decodeMessage(frames, { signer: open, channel: "iopub", replay }).ok).toBe(true);
    expect(decodeMessage(frames, { signer: open, channel: "iopub", replay }).ok).toBe(true);
  });
});

describe("ReplayGuard", () => {
  it("admits each signature once", () => {
    const guard = new ReplayGuard();
    expect(guard.admit("a")).toBe(true);
    expect(guard.admit("b")).toBe(true);
    expect(guard.admit("a")).toBe(false);
  });

  it("stays bounded by forgetting the oldest half when full", () => {
    const guard = new ReplayGuard(4);
    for (const s of ["s1", "s2", "s3", "s4", "s5"]) expect(guard.admit(s)).toBe(true);
    // Over capacity: the oldest half (s1, s2) was forgotten, recent ones are still remembered.
    expect(guard.admit("s5")).toBe(false);
    expect(guard.admit("s4")).toBe(false);
    expect(guard.admit("s1")).toBe(true);
  });
});
