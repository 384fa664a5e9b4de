import type { ErrorCategory } from "./types.js";

const SYNTAX = new Set(["SyntaxError", "IndentationError", "TabError"]);
const IMPORT = new Set(["ImportError", "ModuleNotFoundError"]);
const MEMORY = new Set(["MemoryError"]);

/** The category of a user-code exception, from its class name. */
export function categorizeException(name: string): ErrorCategory {
  if (SYNTAX.has(name)) return "syntax";
  if (IMPORT.has(name)) return "import";
  if (MEMORY.has(name)) return "memory";
  return "runtime";
}

// CSI sequences (colours, cursor moves) and OSC sequences (hyperlinks) as IPython emits them.
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)/g;

/** Removes ANSI escape sequences, so tracebacks read well in logs and LLM prompts. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}
