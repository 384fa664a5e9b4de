import { describe, expect, it } from "vitest";
import { categorizeException, stripAnsi } from "./classify.js";

describe("categorizeException", () => {
  it("maps Python exception names to categories", () => {
    expect(categorizeException("SyntaxError")).toBe("syntax");
    expect(categorizeException("IndentationError")).toBe("syntax");
    expect(categorizeException("TabError")).toBe("syntax");
    expect(categorizeException("ImportError")).toBe("import");
    expect(categorizeException("ModuleNotFoundError")).toBe("import");
    expect(categorizeException("MemoryError")).toBe("memory");
  });

  it("treats everything else as a runtime error, case-sensitively", () => {
    for (const name of ["NameError", "ValueError", "KeyboardInterrupt", "", "syntaxerror", "Error"]) {
      expect(categorizeException(name)).toBe("runtime");
    }
  });
});

describe("stripAnsi", () => {
  it("removes colour codes as IPython emits them", () => {
    const line = "\u001b[0;31mNameError\u001b[0m: name \u001b[1;32m'x'\u001b[39m is not defined";
    expect(stripAnsi(line)).toBe("NameError: name 'x' is not defined");
  });

  it("removes cursor moves and private-mode sequences", () => {
    expect(stripAnsi("a\u001b[2Kb\u001b[1Ac\u001b[?25hd")).toBe("abcd");
  });

  it("removes OSC hyperlinks ended by BEL or ST, keeping the link text", () => {
    const bel = "\u001b]8;;file:///x.py\u0007x.py\u001b]8;;\u0007";
    const st = "\u001b]8;;https://e.org\u001b\\site\u001b]8;;\u001b\\";
    expect(stripAnsi(`see ${bel} and ${st}`)).toBe("see x.py and site");
  });

  it("leaves plain text, including brackets and non-ASCII, alone", () => {
    const text = "[1] x = [2, 3] # € 😀 \t tab";
    expect(stripAnsi(text)).toBe(text);
  });
});
