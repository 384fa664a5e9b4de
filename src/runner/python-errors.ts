import { categorizeException } from "../execution/classify.js";
import type { ExecutionError } from "../execution/types.js";

// The last line of a Python traceback: `NameError: name 'x' is not defined`, or a bare
// `KeyboardInterrupt`; qualified names (`urllib.error.URLError`) included.
const EXCEPTION_LINE = /^([A-Za-z_][\w.]*)(?::\s?(.*))?$/;

/**
 * Finds the exception a Python process died of in its stderr, as `python3 -c` prints it
 * (a `Traceback (most recent call last):` block, or the short form of a SyntaxError), and
 * classifies it. Returns null when stderr holds no traceback.
 */
export function parsePythonError(stderr: string): ExecutionError | null {
  const start = Math.max(stderr.lastIndexOf("Traceback (most recent call last):"), -1);
  const syntaxAt = stderr.search(
    /^\s*File "[^"]*", line \d+\n(?:.*\n)*?(?:SyntaxError|IndentationError|TabError)/m,
  );
  const from = start >= 0 ? start : syntaxAt;
  if (from < 0) return null;
  const lines = stderr.slice(from).replace(/\s+$/, "").split("\n");
  for (let i = lines.length - 1; i > 0; i--) {
    const line = lines[i]!;
    if (line.startsWith(" ") || line.startsWith("\t")) continue;
    const match = EXCEPTION_LINE.exec(line);
    if (!match) continue;
    const qualified = match[1]!;
    const name = qualified.slice(qualified.lastIndexOf(".") + 1);
    return {
      name,
      value: match[2] ?? "",
      traceback: lines.slice(0, i + 1),
      category: categorizeException(name),
    };
  }
  return null;
}
