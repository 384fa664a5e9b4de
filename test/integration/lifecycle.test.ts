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
import { isProcessAlive, pollUntil, procEntryExists, processesMatching } from "../support/processes.js";
import { createManager, expectFinished, REPO_ROOT, type TestEnv } from "./helpers.js";

/** Starts, from inside the kernel, a process whose argv names `tag`; returns its pid. */
async function spawnFromKernel(
  executor: KernelExecutor,
  tag: string,
  how: "orphan" | "child",
): Promise<number> {
  const code =
    how === "orphan"
      ? [
          // `sh` backgrounds the sleeper and exits: the sleeper leaves the kernel's process tree
          // (so ipykernel does not know about it) but stays in its process group.
          "import subprocess, sys",
          'script = \'"$0" -c "import time; time.sleep(60)" "$1" </dev/null >/dev/null 2>&1 & echo $!\'',
          `out = subprocess.run(['/bin/sh', '-c', script, sys.executable, ${JSON.stringify(tag)}],`,
          "                     capture_output=True, text=True, check=True)",
          "print(out.stdout.strip())",
        ].join("\n")
      : [
          // A direct child the kernel never waits for.
          "import subprocess, sys",
          `child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', ${JSON.stringify(tag)}],`,
          "                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)",
          "print(child.pid)",
        ].join("\n");
  const execution = await executor.execute(code);
  expectFinished(execution, "completed", code);
  const pid = Number(execution.stdout.trim());
  expect(Number.isInteger(pid) && pid > 0, execution.stdout).toBe(true);
  expect(isProcessAlive(pid)).toBe(true);
  return pid;
}

describe("dispose", () => {
  let env: TestEnv;
  beforeAll(() => {
    env = createManager();
  });
  afterAll(() => env?.cleanup());

  it("shuts the kernel down politely, ends its process group and removes the connection file", async () => {
    const kernel = await env.manager.start({ name: "python3", shutdownStepMs: 15_000 });
    const pid = kernel.pid!;
    const connectionFile = kernel.connectionFile!;
    expect(connectionFile.startsWith(env.runtimeDir)).toBe(true);
    expect(existsSync(connectionFile)).toBe(true);
    expect(isProcessAlive(pid)).toBe(true);
    expect(processesMatching(connectionFile)).toEqual([pid]);

    const executor = new KernelExecutor(kernel);
    const orphan = await spawnFromKernel(executor, connectionFile, "orphan");
    expect(processesMatching(connectionFile).sort()).toEqual([pid, orphan].sort());
    await executor.dispose();

    expect(env.manager.kernels).toContain(kernel);
    const path = await kernel.dispose();
    // Polite either way; which step ends it depends on how fast ipykernel winds down on a loaded
    // machine (the fake-kernel tests pin each escalation step deterministically).
    expect(["shutdown_request", "sigterm"]).toContain(path);
    expect(await kernel.dispose()).toBe(path); // idempotent
    expect(kernel.status).toBe("dead");
    expect(kernel.death?.reason).toBe("shutdown");
    expect(env.manager.kernels).not.toContain(kernel);

    // runcell reaped the kernel itself before dispose() resolved.
    expect(procEntryExists(pid)).toBe(false);
    expect(existsSync(connectionFile)).toBe(false);
    // The orphan was SIGKILLed with the group; its reaping is up to init, so poll with a bound.
    expect(await pollUntil(() => !isProcessAlive(orphan), 10_000)).toBe(true);
    expect(processesMatching(connectionFile)).toEqual([]);
  });

  it("escalates when the kernel's own shutdown stalls on a child, and still leaves nothing", async () => {
    // ipykernel's shutdown waits for its children to go away, and one it never reaps lingers as
    // a zombie: the polite step then runs out and the group is signalled.
    const kernel = await env.manager.start({ name: "python3", shutdownStepMs: 1000 });
    const pid = kernel.pid!;
    const connectionFile = kernel.connectionFile!;
    const executor = new KernelExecutor(kernel);
    const child = await spawnFromKernel(executor, connectionFile, "child");
    await executor.dispose();

    const path = await kernel.dispose();
    expect(["shutdown_request", "sigterm", "sigkill"]).toContain(path);
    expect(kernel.status).toBe("dead");
    expect(procEntryExists(pid)).toBe(false);
    expect(existsSync(connectionFile)).toBe(false);
    expect(await pollUntil(() => !isProcessAlive(child), 10_000)).toBe(true);
    expect(processesMatching(connectionFile)).toEqual([]);
  });
});

describe("runcell killed with SIGKILL", () => {
  let env: TestEnv;
  let holder: ChildProcess | undefined;

  beforeAll(() => {
    env = createManager();
    // The fixture runs the built package. Build incrementally so dist matches src; a type error
    // elsewhere in src still emits JavaScript, so only a missing dist/index.js is fatal.
    try {
      execFileSync(
        process.execPath,
        [join(REPO_ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"],
        {
          cwd: REPO_ROOT,
          stdio: "pipe",
          timeout: 120_000,
        },
      );
    } catch (error) {
      if (!existsSync(join(REPO_ROOT, "dist/index.js"))) throw error;
    }
  });

  afterAll(async () => {
    if (holder && holder.exitCode === null && holder.signalCode === null) holder.kill("SIGKILL");
    await env?.cleanup();
  });

  it("takes the kernel with it", async () => {
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL("fixtures/hold-kernel.mjs", import.meta.url))],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, RUNCELL_RUNTIME_DIR: env.runtimeDir },
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
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
    expect(isProcessAlive(pid)).toBe(true);
    expect(processesMatching(connectionFile)).toEqual([pid]);

    child.kill("SIGKILL");
    await exited;
    expect(child.signalCode).toBe("SIGKILL");

    // The kernel is no child of this process, so its end can only be observed by polling /proc.
    expect(await pollUntil(() => !isProcessAlive(pid), 15_000)).toBe(true);
    expect(processesMatching(connectionFile)).toEqual([]);
  });
});

/** The child's first stdout line, or undefined if it exits or `signal` fires first. */
function firstLine(child: ChildProcess, signal: AbortSignal): Promise<string | undefined> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: child.stdout! });
    let settled = false;
    const done = (line: string | undefined) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      resolve(line);
      lines.close();
    };
    const onAbort = () => done(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    lines.once("line", (line) => done(line));
    lines.once("close", () => done(undefined));
  });
}
