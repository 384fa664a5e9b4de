import { readFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { runProcess } from "./proc.js";

/** The interpreter with Debian's jupyter_client, ipykernel and nbconvert (not the one on PATH). */
export const SYSTEM_PYTHON = "/usr/bin/python3";

export interface Environment {
  hostname: string;
  platform: string;
  os_release: string;
  arch: string;
  cpu_count: number;
  available_parallelism: number;
  cpu_model: string;
  total_memory_bytes: number;
  load_average_at_start: number[];
  node: string;
  zeromq_js: string | null;
  runcell: string | null;
  git_commit: string | null;
  python: Record<string, string> | { error: string };
}

const PYTHON_PROBE = `
import json, sys
info = {"python": sys.version.split()[0], "executable": sys.executable}
for name in ("jupyter_client", "ipykernel", "nbconvert", "nbclient", "zmq"):
    try:
        info[name] = __import__(name).__version__
    except Exception as error:
        info[name] = "unavailable: " + str(error)
try:
    import zmq
    info["libzmq"] = zmq.zmq_version()
except Exception:
    pass
print(json.dumps(info))
`;

async function packageVersion(path: string): Promise<string | null> {
  try {
    const json = JSON.parse(await readFile(path, "utf8")) as { version?: unknown };
    return typeof json.version === "string" ? json.version : null;
  } catch {
    return null;
  }
}

async function pythonInfo(): Promise<Environment["python"]> {
  const result = await runProcess([SYSTEM_PYTHON, "-c", PYTHON_PROBE], { timeoutMs: 30_000 });
  if (result.code !== 0) return { error: result.stderr.trim() || `exit code ${result.code}` };
  try {
    return JSON.parse(result.stdout) as Record<string, string>;
  } catch (error) {
    return { error: `unreadable probe output: ${(error as Error).message}` };
  }
}

async function gitCommit(root: string): Promise<string | null> {
  const result = await runProcess(["git", "rev-parse", "HEAD"], { cwd: root, timeoutMs: 10_000 });
  return result.code === 0 ? result.stdout.trim() : null;
}

/** Machine, runtime and package versions, recorded with every result file. */
export async function collectEnvironment(root: string): Promise<Environment> {
  const [python, zeromq, runcell, commit] = await Promise.all([
    pythonInfo(),
    packageVersion(join(root, "node_modules/zeromq/package.json")),
    packageVersion(join(root, "package.json")),
    gitCommit(root),
  ]);
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    platform: process.platform,
    os_release: os.release(),
    arch: process.arch,
    cpu_count: cpus.length,
    available_parallelism: os.availableParallelism(),
    cpu_model: cpus[0]?.model ?? "unknown",
    total_memory_bytes: os.totalmem(),
    load_average_at_start: os.loadavg().map((value) => Math.round(value * 100) / 100),
    node: process.version,
    zeromq_js: zeromq,
    runcell,
    git_commit: commit,
    python,
  };
}
