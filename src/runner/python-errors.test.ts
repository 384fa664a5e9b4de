import { describe, expect, it } from "vitest";
import { parsePythonError } from "./python-errors.js";

describe("parsePythonError", () => {
  it("finds the exception at the end of a traceback and classifies it", () => {
    const stderr =
      'Traceback (most recent call last):\n  File "/run/runcell/main.py", line 1, in <module>\n    1/0\nZeroDivisionError: division by zero\n';
    expect(parsePythonError(stderr)).toEqual({
      name: "ZeroDivisionError",
      value: "division by zero",
      traceback: stderr.trimEnd().split("\n"),
      category: "runtime",
    });
  });

  it("reads the short form of a SyntaxError, which has no Traceback header", () => {
    const stderr =
      '  File "/run/runcell/main.py", line 1\n    def f(:\n          ^\nSyntaxError: invalid syntax\n';
    expect(parsePythonError(stderr)).toMatchObject({
      name: "SyntaxError",
      value: "invalid syntax",
      category: "syntax",
    });
  });

  it("keeps the last traceback when output came before it, and handles qualified and bare names", () => {
    const module =
      'some output\nTraceback (most recent call last):\n  File "x", line 1\nurllib.error.URLError: <urlopen error>\n';
    expect(parsePythonError(module)).toMatchObject({
      name: "URLError",
      value: "<urlopen error>",
      category: "runtime",
    });
    const bare = 'Traceback (most recent call last):\n  File "x", line 2\nKeyboardInterrupt\n';
    expect(parsePythonError(bare)).toMatchObject({ name: "KeyboardInterrupt", value: "" });
    const imported =
      "Traceback (most recent call last):\n  File \"x\", line 1\nModuleNotFoundError: No module named 'nope'\n";
    expect(parsePythonError(imported)?.category).toBe("import");
  });

  it("returns null for stderr without a traceback", () => {
    expect(parsePythonError("")).toBeNull();
    expect(parsePythonError("warning: something\n")).toBeNull();
  });
});
