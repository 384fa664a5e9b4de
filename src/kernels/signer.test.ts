import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MessageSigner } from "./signer.js";

const parts = ['{"msg_id":"1","msg_type":"x"}', "{}", "{}", '{"a":1}'].map((p) => Buffer.from(p));

describe("MessageSigner", () => {
  it("signs header, parent, metadata and content with HMAC-SHA256 in order", () => {
    const signer = new MessageSigner("secret");
    const hmac = createHmac("sha256", "secret");
    for (const part of parts) hmac.update(part);
    expect(signer.sign(parts)).toBe(hmac.digest("hex"));
    expect(signer.sign(parts)).toMatch(/^[0-9a-f]{64}$/);
    expect(signer.sign([...parts].reverse())).not.toBe(signer.sign(parts));
  });

  it("verifies its own signature (round trip)", () => {
    const signer = new MessageSigner("k3y");
    expect(signer.enabled).toBe(true);
    expect(signer.verify(Buffer.from(signer.sign(parts)), parts)).toBe(true);
  });

  it("rejects a signature made with another key", () => {
    const signature = Buffer.from(new MessageSigner("other").sign(parts));
    expect(new MessageSigner("k3y").verify(signature, parts)).toBe(false);
  });

  it("rejects a wrong digest of the right length", () => {
    const signer = new MessageSigner("k3y");
    const good = signer.sign(parts);
    const flipped = (good[0] === "0" ? "1" : "0") + good.slice(1);
    expect(signer.verify(Buffer.from(flipped), parts)).toBe(false);
    expect(signer.verify(Buffer.from("0".repeat(64)), parts)).toBe(false);
  });

  it("rejects signatures of the wrong length without throwing", () => {
    const signer = new MessageSigner("k3y");
    const good = signer.sign(parts);
    expect(signer.verify(Buffer.from(good.slice(0, 63)), parts)).toBe(false);
    expect(signer.verify(Buffer.from(`${good}0`), parts)).toBe(false);
    expect(signer.verify(Buffer.alloc(0), parts)).toBe(false);
  });

  it("rejects a signature when the content was tampered with", () => {
    const signer = new MessageSigner("k3y");
    const signature = Buffer.from(signer.sign(parts));
    const tampered = [...parts.slice(0, 3), Buffer.from('{"a":2}')];
    expect(signer.verify(signature, tampered)).toBe(false);
  });

  it("with an empty key signs nothing and accepts everything (no-authentication mode)", () => {
    const signer = new MessageSigner("");
    expect(signer.enabled).toBe(false);
    expect(signer.sign(parts)).toBe("");
    expect(signer.verify(Buffer.alloc(0), parts)).toBe(true);
  });

  it("refuses unknown signature schemes", () => {
    expect(() => new MessageSigner("k", "hmac-md5")).toThrow(/unsupported signature scheme "hmac-md5"/);
    expect(() => new MessageSigner("k", "hmac-sha256")).not.toThrow();
  });
});
