import { createHmac, timingSafeEqual } from "node:crypto";

/** Signature schemes runcell accepts in connection files. */
export type SignatureScheme = "hmac-sha256";

/**
 * HMAC-SHA256 signing of the four JSON frames of a message, as the Jupyter wire protocol
 * defines it. An empty key disables signing (the spec's "no authentication" mode).
 */
export class MessageSigner {
  readonly #key: Buffer;

  constructor(key: string, scheme: string = "hmac-sha256") {
    if (scheme !== "hmac-sha256") {
      throw new Error(`unsupported signature scheme ${JSON.stringify(scheme)}: use hmac-sha256`);
    }
    this.#key = Buffer.from(key, "utf8");
  }

  get enabled(): boolean {
    return this.#key.length > 0;
  }

  /** Hex digest of header, parent_header, metadata and content, in that order. */
  sign(parts: readonly Buffer[]): string {
    if (!this.enabled) return "";
    const hmac = createHmac("sha256", this.#key);
    for (const part of parts) hmac.update(part);
    return hmac.digest("hex");
  }

  /** Constant-time comparison of `signature` with the expected digest of `parts`. */
  verify(signature: Buffer, parts: readonly Buffer[]): boolean {
    if (!this.enabled) return true;
    const expected = Buffer.from(this.sign(parts), "latin1");
    // timingSafeEqual needs equal lengths; a length mismatch leaks nothing secret (digests are fixed-size).
    if (signature.length !== expected.length) return false;
    return timingSafeEqual(signature, expected);
  }
}
