/**
 * Stopping running code on a real ipykernel: cancel and timeout by interrupt (state kept),
 * timeout of code that swallows the interrupt (kernel restarted), the kernel dying, and
 * explicit restarts. The tests share one kernel and run in order: each leaves it usable.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Kernel, KernelStatus } from "../../src/index.js";
import { KernelExecutor } from "../../src/index.js";
import { isProcessAlive } from "../support/processes.js";
import { createManager, expectFinished, resultText, type TestEnv } from "./helpers.js";

let kernel: Kernel;
let executor: KernelExecutor;
let env: TestEnv | undefined;

beforeAll(async () => {
  env = createManager();
  kernel = await env.manager.start({ name: "python3" });
  // Shorter than the default to keep the "ignores the interrupt" case quick, but with room for
  // a fresh kernel's first traceback, which a loaded 2-core machine has been seen to stretch
  // past 2 s; an interrupt that lands later than that would be read as ignored.
  executor = new KernelExecutor(kernel, { interruptGraceMs: 3_000 });
});

afterAll(async () => {
  await executor?.dispose();
  await env?.cleanup();
});

async function expectValue(expression: string, expected: string): Promise<void> {
  const execution = await executor.execute(expression);
  expectFinished(execution, "completed", expression);
  expect(resultText(execution)).toBe(expected);
}

describe("interrupt keeps state", () => {
  it("cancels a running time.sleep(60) through its AbortSignal", async () => {
    await expectValue("kept = 'still here'\nkept", "'still here'");
    const controller = new AbortController();
    const code = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)";
    const pidBefore = kernel.pid;
    // Abort once the code is seen running, not after a guessed delay.
    const execution = await executor.execute(code, {
      signal: controller.signal,
      onStdout: (text) => {
        if (text.includes("sleeping")) controller.abort();
      },
    });
    expectFinished(execution, "cancelled", code);
    expect(execution.error!.category).toBe("cancelled");
    expect(execution.error!.value).toBe("cancelled: the kernel was interrupted");
    expect(execution.limit).toBeNull();
    expect(execution.stdout).toBe("sleeping\n");
    // The interrupt surfaced in the kernel as a KeyboardInterrupt.
    expect(
      execution.outputs.some((output) => output.type === "error" && output.name === "KeyboardInterrupt"),
    ).toBe(true);
    expect(kernel.pid).toBe(pidBefore);
    await expectValue("kept", "'still here'");
  });

  it("a signal aborted before the execution starts cancels it without running it", async () => {
    const execution = await executor.execute("kept = 'overwritten'", { signal: AbortSignal.abort() });
    expectFinished(execution, "cancelled");
    expect(execution.error!.category).toBe("cancelled");
    expect(execution.started_at).toBeNull();
    await expectValue("kept", "'still here'");
  });

  it("times out `while True: pass` and keeps the kernel and its state", async () => {
    const code = "while True:\n    pass";
    const pidBefore = kernel.pid;
    const execution = await executor.execute(code, { timeoutMs: 1000 });
    expectFinished(execution, "timed_out", code);
    expect(execution.limit).toBe("time");
    expect(execution.limits.time_ms).toBe(1000);
    expect(execution.error!.category).toBe("timeout");
    expect(execution.error!.name).toBe("TimeoutError");
    expect(execution.error!.value).toMatch(/kernel keeps its state/);
    expect(kernel.pid).toBe(pidBefore);
    await expectValue("kept", "'still here'");
  });
});

describe("restarts", () => {
  it("times out a loop that swallows KeyboardInterrupt by restarting the kernel", async () => {
    await expectValue("doomed = 1\ndoomed", "1");
    const oldPid = kernel.pid!;
    const statuses: KernelStatus[] = [];
    const unsubscribe = kernel.onStatus((status) => statuses.push(status));
    const code = [
      "import time",
      "while True:",
      "    try:",
      "        time.sleep(0.05)",
      "    except KeyboardInterrupt:",
      "        pass",
    ].join("\n");
    const execution = await executor.execute(code, { timeoutMs: 1000 });
    expectFinished(execution, "timed_out", code);
    expect(execution.limit).toBe("time");
    expect(execution.error!.category).toBe("timeout");
    expect(execution.error!.value).toMatch(/kernel was restarted/);

    // The next execution waits for the new kernel, which starts from scratch.
    const after = await executor.execute("'doomed' in globals()");
    unsubscribe();
    expectFinished(after, "completed");
    expect(resultText(after)).toBe("False");
    expect(after.execution_count).toBe(1);
    expect(statuses).toContain("restarting");
    expect(kernel.status).toBe("idle");
    expect(kernel.pid).not.toBe(oldPid);
    // The replaced process is gone (Node reaped it before the restart finished).
    expect(isProcessAlive(oldPid)).toBe(false);
  });

  it("restart() resets the execution count and drops all state", async () => {
    await expectValue("y = 7\ny", "7");
    const before = await executor.execute("y + 1");
    expect(before.execution_count).toBeGreaterThan(1);
    const oldPid = kernel.pid!;
    await kernel.restart();
    expect(kernel.status).toBe("idle");
    expect(kernel.pid).not.toBe(oldPid);
    expect(isProcessAlive(oldPid)).toBe(false);

    const after = await executor.execute("'y' in globals()");
    expectFinished(after, "completed");
    expect(resultText(after)).toBe("False");
    expect(after.execution_count).toBe(1);
    const missing = await executor.execute("y");
    expectFinished(missing, "failed");
    expect(missing.error!.name).toBe("NameError");
    expect(missing.execution_count).toBe(2);
  });
});

describe("kernel death", () => {
  it("reports os._exit(1) as failed/kernel_died and restart() brings the kernel back", async () => {
    await expectValue("lost = 1\nlost", "1");
    const code = "import os; os._exit(1)";
    const oldPid = kernel.pid!;
    const execution = await executor.execute(code);
    expectFinished(execution, "failed", code);
    expect(execution.error!.category).toBe("kernel_died");
    expect(execution.error!.name).toBe("KernelDied");
    expect(execution.error!.value).toMatch(/exited with code 1/);
    expect(kernel.status).toBe("dead");
    expect(kernel.death).toMatchObject({ reason: "exited", exit_code: 1, signal: null });
    // Its exit is what told runcell, so the process is already reaped.
    expect(isProcessAlive(oldPid)).toBe(false);

    // While dead, executions fail at once instead of waiting.
    const refused = await executor.execute("1");
    expectFinished(refused, "failed");
    expect(refused.error!.category).toBe("kernel_died");
    expect(refused.started_at).toBeNull();

    await kernel.restart();
    expect(kernel.status).toBe("idle");
    expect(kernel.death).toBeUndefined();
    expect(kernel.pid).not.toBe(oldPid);
    const after = await executor.execute("'lost' in globals(), 6 * 7");
    expectFinished(after, "completed");
    expect(resultText(after)).toBe("(False, 42)");
    expect(after.execution_count).toBe(1);
  });
});
