import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../..");
export const CLI = join(ROOT, "dist/cli/main.js");

/** Builds dist/ when it is missing or older than the sources, so the CLI under test is current. */
export function ensureBuilt(): void {
  execFileSync("bash", [join(ROOT, "scripts/setup.sh")], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  });
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion (bounded by `timeoutMs`, after which it is killed). */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}

/** A minimal valid nbformat 4 notebook with the given cells. */
export function notebook(
  cells: Array<{ type?: "code" | "markdown" | "raw"; source: string }>,
  kernel = "python3",
) {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: kernel, display_name: "Python 3", language: "python" } },
    cells: cells.map((cell, i) => ({
      id: `cell-${i}`,
      cell_type: cell.type ?? "code",
      metadata: {},
      source: cell.source,
      ...((cell.type ?? "code") === "code" ? { outputs: [], execution_count: null } : {}),
    })),
  };
}

/** Validates a notebook file with Debian's nbformat; returns its error text, or "" when valid. */
export function nbformatErrors(path: string): string {
  try {
    execFileSync(
      "/usr/bin/python3",
      ["-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))", path],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    return "";
  } catch (error) {
    return String((error as { stderr?: Buffer }).stderr ?? error);
  }
}

export const exists = existsSync;
