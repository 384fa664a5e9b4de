/**
 * Nothing is left behind: dispose() ends the kernel's whole process group and removes its
 * connection file, and a runcell process killed with SIGKILL takes its kernel with it.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KernelExecutor } from "../../src/index.js";
import {
  createManager,
  expectFinished,
  pollUntil,
  procEntryExists,
  processAlive,
  processesMentioning,
  REPO_ROOT,
} from "./helpers.js";

describe("dispose", () => {
  const env = createManager();
  afterAll(() => env.cleanup());

  it("ends the kernel, its children and removes the connection file", async () => {
    // A generous step makes the polite path deterministic even on a loaded machine.
    const kernel = await env.manager.start({ name: "python3", shutdownStepMs: 15_000 });
    const pid = kernel.pid!;
    const connectionFile = kernel.connectionFile!;
    expect(connectionFile.startsWith(env.runtimeDir)).toBe(true);
    expect(existsSync(connectionFile)).toBe(true);
    expect(processAlive(pid)).toBe(true);
    expect(processesMentioning(connectionFile)).toContain(pid);

    // A grandchild in the kernel's process group, whose argv names the connection file too.
    const executor = new KernelExecutor(kernel);
    const code = [
      "import subprocess, sys",
      "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', " +
        `${JSON.stringify(connectionFile)}])`,
      "print(child.pid)",
    ].join("\n");
    const execution = await executor.execute(code);
    expectFinished(execution, "completed", code);
    const grandchild = Number(execution.stdout.trim());
    expect(processAlive(grandchild)).toBe(true);
    expect(processesMentioning(connectionFile).sort()).toEqual([pid, grandchild].sort());
    await executor.dispose();

    expect(env.manager.kernels).toContain(kernel);
    const path = await kernel.dispose();
    expect(path).toBe("shutdown_request");
    expect(await kernel.dispose()).toBe(path); // idempotent
    expect(kernel.status).toBe("dead");
    expect(kernel.death?.reason).toBe("shutdown");
    expect(env.manager.kernels).not.toContain(kernel);

    // runcell reaped the kernel itself before dispose() resolved.
    expect(procEntryExists(pid)).toBe(false);
    expect(existsSync(connectionFile)).toBe(false);
    // The grandchild was SIGKILLed with the group; its reaping is up to init, so poll with a bound.
    expect(await pollUntil(() => !processAlive(grandchild), 10_000)).toBe(true);
    expect(processesMentioning(connectionFile)).toEqual([]);
  });
});

describe("runcell killed with SIGKILL", () => {
  const env = createManager();
  let holder: ChildProcess | undefined;

  beforeAll(() => {
    // The fixture runs the built package. Build incrementally so dist matches src; a type error
    // elsewhere in src still emits JavaScript, so only a missing dist/index.js is fatal.
    try {
      execFileSync(process.execPath, [join(REPO_ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], {
        cwd: REPO_ROOT,
        stdio: "pipe",
        timeout: 120_000,
      });
    } catch (error) {
      if (!existsSync(join(REPO_ROOT, "dist/index.js"))) throw error;
    }
  });

  afterAll(async () => {
    if (holder && holder.exitCode === null && holder.signalCode === null) holder.kill("SIGKILL");
    await env.cleanup();
  });

  it("takes the kernel with it", async () => {
    const child = spawn(process.execPath, [fileURLToPath(new URL("fixtures/hold-kernel.mjs", import.meta.url))], {
      cwd: REPO_ROOT,
      env: { ...process.env, RUNCELL_RUNTIME_DIR: env.runtimeDir },
      stdio: ["pipe", "pipe", "pipe"],
    });
    holder = child;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });

    const started = await firstLine(child, AbortSignal.timeout(30_000));
    expect(started, `hold-kernel printed nothing; stderr:\n${stderr}`).toBeDefined();
    const { pid, connectionFile } = JSON.parse(started!) as { pid: number; connectionFile: string };
    expect(pid).toBeGreaterThan(0);
    expect(processAlive(pid)).toBe(true);
    expect(processesMentioning(connectionFile)).toEqual([pid]);

    child.kill("SIGKILL");
    await exited;
    expect(child.signalCode).toBe("SIGKILL");

    // The kernel is no child of this process, so its end can only be observed by polling /proc.
    expect(await pollUntil(() => !processAlive(pid), 15_000)).toBe(true);
    expect(processesMentioning(connectionFile)).toEqual([]);
  });
});

/** The child's first stdout line, or undefined if it exits or `signal` fires first. */
function firstLine(child: ChildProcess, signal: AbortSignal): Promise<string | undefined> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: child.stdout! });
    const done = (line: string | undefined) => {
      signal.removeEventListener("abort", onAbort);
      lines.close();
      resolve(line);
    };
    const onAbort = () => done(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    lines.once("line", (line) => done(line));
    lines.once("close", () => done(undefined));
  });
}
