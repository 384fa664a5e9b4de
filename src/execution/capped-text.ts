/**
 * A text accumulator with a byte cap that keeps the head and the tail and counts what it drops
 * in between. Memory stays within the cap whatever is written.
 */
export class CappedText {
  readonly #headCap: number;
  readonly #tailCap: number;
  #head = "";
  #headBytes = 0;
  #headFull = false;
  #tail: string[] = [];
  #tailBytes = 0;
  #totalBytes = 0;
  #droppedBytes = 0;

  /** `capBytes` is split evenly between head and tail. */
  constructor(readonly capBytes: number) {
    this.#headCap = Math.floor(capBytes / 2);
    this.#tailCap = capBytes - this.#headCap;
  }

  get totalBytes(): number {
    return this.#totalBytes;
  }

  get droppedBytes(): number {
    return this.#droppedBytes;
  }

  get truncated(): boolean {
    return this.#droppedBytes > 0;
  }

  append(text: string): void {
    if (text.length === 0) return;
    const bytes = Buffer.byteLength(text);
    this.#totalBytes += bytes;
    if (!this.#headFull) {
      if (this.#headBytes + bytes <= this.#headCap) {
        this.#head += text;
        this.#headBytes += bytes;
        return;
      }
      const room = this.#headCap - this.#headBytes;
      const [fits, rest] = splitAtByte(text, room);
      this.#head += fits;
      this.#headBytes += Buffer.byteLength(fits);
      this.#headFull = true;
      text = rest;
    }
    this.#pushTail(text);
  }

  #pushTail(text: string): void {
    let bytes = Buffer.byteLength(text);
    if (bytes > this.#tailCap) {
      // Only the last tailCap bytes of this chunk can survive; drop everything before them.
      const keep = dropLeadingBytes(text, bytes - this.#tailCap);
      this.#droppedBytes += bytes - Buffer.byteLength(keep) + this.#tailBytes;
      this.#tail = [keep];
      this.#tailBytes = Buffer.byteLength(keep);
      return;
    }
    this.#tail.push(text);
    this.#tailBytes += bytes;
    while (this.#tailBytes > this.#tailCap) {
      const first = this.#tail[0]!;
      const firstBytes = Buffer.byteLength(first);
      const excess = this.#tailBytes - this.#tailCap;
      if (firstBytes <= excess) {
        this.#tail.shift();
        this.#tailBytes -= firstBytes;
        this.#droppedBytes += firstBytes;
      } else {
        const keep = dropLeadingBytes(first, excess);
        bytes = firstBytes - Buffer.byteLength(keep);
        this.#tail[0] = keep;
        this.#tailBytes -= bytes;
        this.#droppedBytes += bytes;
      }
    }
  }

  /** The head, the tail, and between them a marker saying how much was dropped. */
  toString(): string {
    const tail = this.#tail.join("");
    if (this.#droppedBytes === 0) return this.#head + tail;
    return `${this.#head}\n[… ${this.#droppedBytes} bytes of output dropped …]\n${tail}`;
  }

  /** The text kept after the dropped part (empty when nothing was dropped). */
  tailText(): string {
    return this.#droppedBytes === 0 ? "" : this.#tail.join("");
  }
}

/** Splits `text` so the first part is at most `maxBytes` UTF-8 bytes, never inside a character. */
export function splitAtByte(text: string, maxBytes: number): [string, string] {
  if (maxBytes <= 0) return ["", text];
  const buffer = Buffer.from(text);
  if (buffer.length <= maxBytes) return [text, ""];
  let cut = maxBytes;
  // Step back over UTF-8 continuation bytes (10xxxxxx) so no character is split.
  while (cut > 0 && (buffer[cut]! & 0xc0) === 0x80) cut--;
  return [buffer.subarray(0, cut).toString(), buffer.subarray(cut).toString()];
}

/** Drops at least `bytes` UTF-8 bytes from the start of `text`, rounding forward to a character boundary. */
function dropLeadingBytes(text: string, bytes: number): string {
  const buffer = Buffer.from(text);
  let cut = Math.min(bytes, buffer.length);
  while (cut < buffer.length && (buffer[cut]! & 0xc0) === 0x80) cut++;
  return buffer.subarray(cut).toString();
}
