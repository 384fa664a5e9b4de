import { describe, expect, it } from "vitest";
import { CappedText, splitAtByte } from "./capped-text.js";

const bytes = (text: string) => Buffer.byteLength(text);
const MARKER = /\n\[… (\d+) bytes of output dropped …\]\n/;

/** Splits a truncated CappedText rendering into head, dropped count and tail. */
function parts(text: string): { head: string; dropped: number; tail: string } {
  const match = MARKER.exec(text);
  if (!match) throw new Error(`no drop marker in ${JSON.stringify(text)}`);
  return {
    head: text.slice(0, match.index),
    dropped: Number(match[1]),
    tail: text.slice(match.index + match[0].length),
  };
}

describe("splitAtByte", () => {
  it("splits ASCII at the byte count", () => {
    expect(splitAtByte("hello", 2)).toEqual(["he", "llo"]);
    expect(splitAtByte("hello", 5)).toEqual(["hello", ""]);
    expect(splitAtByte("hello", 99)).toEqual(["hello", ""]);
    expect(splitAtByte("hello", 0)).toEqual(["", "hello"]);
    expect(splitAtByte("hello", -1)).toEqual(["", "hello"]);
  });

  it("never cuts inside a multi-byte character", () => {
    // "a€b": a=1 byte, €=3 bytes, b=1 byte.
    expect(splitAtByte("a€b", 1)).toEqual(["a", "€b"]);
    expect(splitAtByte("a€b", 2)).toEqual(["a", "€b"]);
    expect(splitAtByte("a€b", 3)).toEqual(["a", "€b"]);
    expect(splitAtByte("a€b", 4)).toEqual(["a€", "b"]);
    // An emoji is 4 bytes (a surrogate pair in JS).
    expect(splitAtByte("😀😀", 5)).toEqual(["😀", "😀"]);
    expect(splitAtByte("😀", 3)).toEqual(["", "😀"]);
  });
});

describe("CappedText", () => {
  it("keeps everything below the cap, with no marker", () => {
    const text = new CappedText(100);
    text.append("hello ");
    text.append("");
    text.append("world");
    expect(text.toString()).toBe("hello world");
    expect(text.truncated).toBe(false);
    expect(text.droppedBytes).toBe(0);
    expect(text.totalBytes).toBe(11);
    expect(text.tailText()).toBe("");
  });

  it("keeps the head and the tail and marks what was dropped between them", () => {
    const text = new CappedText(10);
    for (let i = 0; i < 10; i++) text.append(String(i).repeat(3));
    expect(text.totalBytes).toBe(30);
    expect(text.truncated).toBe(true);
    expect(text.droppedBytes).toBe(20);
    expect(text.toString()).toBe("00011\n[… 20 bytes of output dropped …]\n88999");
    expect(text.tailText()).toBe("88999");
  });

  it("handles one chunk much larger than the cap", () => {
    const text = new CappedText(8);
    text.append(`HEAD${"x".repeat(1000)}TAIL`);
    expect(text.toString()).toBe(`HEAD\n[… 1000 bytes of output dropped …]\nTAIL`);
    expect(text.totalBytes).toBe(1008);
  });

  it("never splits a euro sign at the head cut or the tail cut", () => {
    const text = new CappedText(8);
    text.append("ab€"); // 5 bytes: the head (4 bytes) cannot take the whole €
    text.append("€€€€€");
    text.append("€zz"); // the last 4 bytes start inside this €
    const rendered = text.toString();
    expect(rendered).not.toContain("\uFFFD");
    const { head, dropped, tail } = parts(rendered);
    expect(head).toBe("ab");
    expect(tail).toBe("zz");
    expect(bytes(head) + dropped + bytes(tail)).toBe(text.totalBytes);
  });

  it("never splits an emoji around the cut, and stays within its cap", () => {
    const text = new CappedText(8);
    text.append("abcd");
    text.append("xy😀z"); // 7 bytes for a 4-byte tail: the 😀 cannot be kept whole with the z
    const { head, dropped, tail } = parts(text.toString());
    expect(head).toBe("abcd");
    expect(tail).toBe("z");
    expect(dropped).toBe(6);
    expect(text.toString()).not.toContain("\uFFFD");
  });

  it("does not hang when the oldest tail chunk starts with a character wider than the excess", () => {
    const text = new CappedText(8);
    text.append("abcd");
    text.append("€"); // head full: the € goes to the 4-byte tail
    text.append("ab"); // one byte too many: the whole € must go
    expect(text.toString()).toBe("abcd\n[… 3 bytes of output dropped …]\nab");
    expect(text.totalBytes).toBe(9);
  });

  it("keeps its invariants for any mix of multi-byte chunks", () => {
    const alphabet = ["a", "é", "€", "😀", "\n", "漢"];
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const cap = 1 + random(40);
      const text = new CappedText(cap);
      let full = "";
      for (let chunk = random(12); chunk >= 0; chunk--) {
        let piece = "";
        for (let n = random(15); n > 0; n--) piece += alphabet[random(alphabet.length)];
        text.append(piece);
        full += piece;
      }
      const rendered = text.toString();
      expect(rendered).not.toContain("\uFFFD");
      expect(text.totalBytes).toBe(bytes(full));
      if (!text.truncated) {
        expect(rendered).toBe(full);
        continue;
      }
      const { head, dropped, tail } = parts(rendered);
      expect(dropped).toBe(text.droppedBytes);
      expect(full.startsWith(head)).toBe(true);
      expect(full.endsWith(tail)).toBe(true);
      expect(bytes(head)).toBeLessThanOrEqual(Math.floor(cap / 2));
      expect(bytes(tail)).toBeLessThanOrEqual(cap - Math.floor(cap / 2));
      expect(bytes(head) + dropped + bytes(tail)).toBe(bytes(full));
      expect(text.tailText()).toBe(tail);
    }
  });
});
