/**
 * The engine against a fake kernel that behaves: outputs, displays, input, queueing,
 * stop-on-error, cancellation and both interrupt modes.
 */
import { readdir } from "node:fs/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AbortedError } from "../../src/errors.js";
import { KernelExecutor } from "../../src/execution/kernel-executor.js";
import type { Execution, ExecutionEvent } from "../../src/execution/types.js";
import type { JupyterMessage } from "../../src/kernels/messages.js";
import { createFakeManager, type FakeManager, waitForStatus, within } from "../fakes/fake-kernelspec.js";
import { isProcessAlive } from "../support/processes.js";

let fake: FakeManager;

beforeAll(async () => {
  fake = await createFakeManager({
    specs: {
      fake: {},
      // Ignores SIGINT, so only an interrupt_request can interrupt it.
      "fake-message": { interruptMode: "message", env: { FAKE_IGNORE_SIGINT: "1" } },
    },
  });
});

afterEach(async () => {
  await fake.disposeAll();
  expect(fake.leftovers()).toEqual([]);
});

afterAll(async () => {
  await fake?.cleanup();
});

describe("start and shutdown", () => {
  it("starts a kernel that answered kernel_info_request, and shuts it down politely", async () => {
    const { kernel, executor } = await fake.startKernel();
    expect(kernel.status).toBe("idle");
    expect(kernel.info).toMatchObject({
      status: "ok",
      implementation: "fake-kernel",
      protocol_version: "5.3",
      language_info: { name: "fake" },
    });
    const pid = kernel.pid!;
    expect(isProcessAlive(pid)).toBe(true);
    expect(fake.leftovers()).toEqual([pid]);
    expect(await readdir(fake.runtimeDir)).toEqual([`kernel-${kernel.id}.json`]);
    expect((await executor.execute("print:hi")).status).toBe("completed");

    const disposing = kernel.dispose();
    expect(kernel.dispose()).toBe(disposing);
    expect(await disposing).toBe("shutdown_request");
    expect(kernel.status).toBe("dead");
    expect(kernel.death?.reason).toBe("shutdown");
    expect(isProcessAlive(pid)).toBe(false);
    expect(await readdir(fake.runtimeDir)).toEqual([]);
    await expect(kernel.send("shell", "kernel_info_request", {})).rejects.toBeInstanceOf(AbortedError);
    expect((await executor.execute("print:late")).status).toBe("failed");
  });

  it("shutdown_request ends a kernel even while it is busy", async () => {
    const { kernel, executor } = await fake.startKernel();
    const pid = kernel.pid!;
    const running = executor.execute("print:started\nsleep:60000");
    await waitForStatus(kernel, "busy");
    expect(await kernel.dispose()).toBe("shutdown_request");
    expect(isProcessAlive(pid)).toBe(false);
    expect(await running).toMatchObject({ status: "failed", error: { category: "kernel_died" } });
  });

  it("dispose({ now }) kills at once, without a shutdown_request, and calls onSpawn before ready", async () => {
    const order: string[] = [];
    const { kernel } = await fake.startKernel({ onSpawn: () => order.push("spawned") });
    order.push("ready");
    expect(order).toEqual(["spawned", "ready"]);
    const pid = kernel.pid!;
    const disposing = kernel.dispose({ now: true });
    expect(kernel.dispose()).toBe(disposing); // the first call's mode holds
    expect(await disposing).toBe("sigkill");
    expect(isProcessAlive(pid)).toBe(false);
    expect(await readdir(fake.runtimeDir)).toEqual([]);
  });

  it("dispose uses SIGTERM when the kernel does not answer shutdown_request", async () => {
    const { kernel } = await fake.startKernel({
      envOverrides: { FAKE_IGNORE_SHUTDOWN_REQUEST: "1" },
      shutdownStepMs: 600,
    });
    const pid = kernel.pid!;
    expect(await kernel.dispose()).toBe("sigterm");
    expect(isProcessAlive(pid)).toBe(false);
  });
});

describe("outputs", () => {
  it("collects streams, results and displays into the record, in order", async () => {
    const { executor } = await fake.startKernel();
    const events: ExecutionEvent[] = [];
    const stdout: string[] = [];
    const execution = await executor.execute(
      ["write:a", "print:b", "stderr:careful", "print:c", "display::picture", "result:42"].join("\n"),
      { onEvent: (event) => events.push(event), onStdout: (text) => stdout.push(text) },
    );
    expect(execution).toMatchObject({
      status: "completed",
      language: "fake",
      stdout: "ab\nc\n",
      stderr: "careful\n",
      error: null,
      execution_count: 1,
      truncated: false,
      dropped_bytes: 0,
      stdout_bytes: 5,
      stderr_bytes: 8,
      exit_code: null,
    });
    expect(execution.outputs).toEqual([
      { type: "stream", name: "stdout", text: "ab\n" },
      { type: "stream", name: "stderr", text: "careful\n" },
      { type: "stream", name: "stdout", text: "c\n" },
      { type: "display", data: { "text/plain": "picture" }, metadata: {} },
      { type: "result", execution_count: 1, data: { "text/plain": "42" }, metadata: {} },
    ]);
    expect(stdout).toEqual(["a", "b\n", "c\n"]);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.every((e) => e.execution_id === execution.id)).toBe(true);
    expect(events.filter((e) => e.type === "status").map((e) => e.type === "status" && e.status)).toEqual([
      "queued",
      "running",
      "completed",
    ]);
    expect(events.at(-1)).toMatchObject({ type: "done", execution: { id: execution.id } });
    expect(execution.started_at).not.toBeNull();
    expect(execution.finished_at).not.toBeNull();
    expect(execution.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it("counts executions, except those not stored in history", async () => {
    const { executor } = await fake.startKernel();
    expect((await executor.execute("print:1")).execution_count).toBe(1);
    expect((await executor.execute("print:2")).execution_count).toBe(2);
    expect((await executor.execute("print:3", { storeHistory: false })).execution_count).toBe(2);
    expect((await executor.execute("result:x")).outputs).toEqual([
      { type: "result", execution_count: 3, data: { "text/plain": "x" }, metadata: {} },
    ]);
  });

  it("updates a display by its display_id and honours clear_output", async () => {
    const { executor } = await fake.startKernel();
    const events: ExecutionEvent[] = [];
    const execution = await executor.execute(
      ["display:bar:0%", "print:working", "update:bar:100%", "display:other:x"].join("\n"),
      { onEvent: (event) => events.push(event) },
    );
    expect(execution.outputs).toEqual([
      { type: "display", data: { "text/plain": "100%" }, metadata: {}, display_id: "bar" },
      { type: "stream", name: "stdout", text: "working\n" },
      { type: "display", data: { "text/plain": "x" }, metadata: {}, display_id: "other" },
    ]);
    expect(events.find((e) => e.type === "update_display")).toMatchObject({
      display_id: "bar",
      output: { data: { "text/plain": "100%" } },
    });

    const cleared = await executor.execute(["print:frame 1", "clear:wait", "print:frame 2"].join("\n"));
    expect(cleared.outputs).toEqual([{ type: "stream", name: "stdout", text: "frame 2\n" }]);
    expect(cleared.stdout).toBe("frame 1\nframe 2\n");

    const clearedAtEnd = await executor.execute(["print:gone", "clear"].join("\n"));
    expect(clearedAtEnd.outputs).toEqual([]);
    expect(clearedAtEnd.stdout).toBe("gone\n");
  });

  it("records an error with its category and an ANSI-free traceback", async () => {
    const { executor } = await fake.startKernel();
    const errors: string[] = [];
    const failed = await executor.execute(
      "print:before\nerror:NameError:name 'x' is not defined\nprint:after",
      {
        onError: (error) => errors.push(error.name),
      },
    );
    expect(failed.status).toBe("failed");
    expect(failed.stdout).toBe("before\n");
    expect(failed.error).toMatchObject({
      name: "NameError",
      value: "name 'x' is not defined",
      category: "runtime",
    });
    expect(failed.error?.traceback.join("\n")).not.toContain("\u001b");
    expect(failed.error?.traceback.at(-1)).toBe("NameError: name 'x' is not defined");
    const output = failed.outputs.find((o) => o.type === "error");
    expect(output?.type === "error" && output.traceback.join("")).toContain("\u001b[0;31m");
    expect(errors).toEqual(["NameError"]);

    expect((await executor.execute("error:SyntaxError:bad")).error?.category).toBe("syntax");
    expect((await executor.execute("error:ModuleNotFoundError:no numpy")).error?.category).toBe("import");
    expect((await executor.execute("no-such-command")).error).toMatchObject({ name: "SyntaxError" });
  });
});

describe("stdin", () => {
  it("answers input requests line by line from a string", async () => {
    const { executor } = await fake.startKernel();
    const execution = await executor.execute("input:First name? \ninput:Last name? ", {
      stdin: "Ada\nLovelace",
    });
    expect(execution.status).toBe("completed");
    expect(execution.stdout).toBe("Ada\nLovelace\n");
  });

  it("is ready for input() as soon as the kernel is, even if its stdin socket comes up last", async () => {
    const { executor } = await fake.startKernel({ envOverrides: { FAKE_STDIN_DELAY_MS: "400" } });
    const execution = await within(executor.execute("input:Name? ", { stdin: "Ada" }), 20_000, "input()");
    expect(execution.status).toBe("completed");
    expect(execution.stdout).toBe("Ada\n");
  });

  it("asks a function with the prompt and the password flag", async () => {
    const { executor } = await fake.startKernel();
    const asked: Array<[string, boolean]> = [];
    const execution = await executor.execute("input:Name: \npassword:Secret: ", {
      stdin: async (prompt, password) => {
        asked.push([prompt, password]);
        return password ? "hunter2" : "Grace";
      },
    });
    expect(asked).toEqual([
      ["Name: ", false],
      ["Secret: ", true],
    ]);
    expect(execution.stdout).toBe("Grace\nhunter2\n");
  });

  it("without stdin, input() fails clearly instead of hanging", async () => {
    const { executor } = await fake.startKernel();
    const execution = await executor.execute("input:Name? ");
    expect(execution.status).toBe("failed");
    expect(execution.error?.name).toBe("StdinNotImplementedError");
  });
});

describe("queueing and stop-on-error", () => {
  it("runs executions one at a time in FIFO order", async () => {
    const { executor } = await fake.startKernel();
    const order: string[] = [];
    const runs = ["a", "b", "c"].map((name) =>
      executor.execute(`sleep:20\nprint:${name}`, { onStdout: (text) => order.push(text.trim()) }),
    );
    expect(executor.queueDepth).toBe(2);
    const done = await Promise.all(runs);
    expect(done.map((e) => e.status)).toEqual(["completed", "completed", "completed"]);
    expect(order).toEqual(["a", "b", "c"]);
    expect(done.map((e) => e.execution_count)).toEqual([1, 2, 3]);
  });

  it("by default cancels the executions queued behind a failing one, naming it", async () => {
    const { executor } = await fake.startKernel();
    const failing = executor.execute("error:ValueError:boom");
    const behind = [executor.execute("print:one"), executor.execute("print:two")];
    const first = await failing;
    const rest = await Promise.all(behind);
    expect(first.status).toBe("failed");
    for (const execution of rest) {
      expect(execution.status).toBe("cancelled");
      expect(execution.stdout).toBe("");
      expect(execution.started_at).toBeNull();
      expect(execution.error).toMatchObject({ name: "Aborted", category: "cancelled" });
      expect(execution.error?.value).toContain(first.id);
      expect(execution.error?.value).toContain("ValueError");
    }
    expect((await executor.execute("print:later")).status).toBe("completed");
  });

  it("with stopOnError false, the executions behind a failing one still run", async () => {
    const { executor } = await fake.startKernel();
    const failing = executor.execute("error:ValueError:boom", { stopOnError: false });
    const behind = [executor.execute("print:one"), executor.execute("print:two")];
    expect((await failing).status).toBe("failed");
    const rest = await Promise.all(behind);
    expect(rest.map((e) => [e.status, e.stdout])).toEqual([
      ["completed", "one\n"],
      ["completed", "two\n"],
    ]);
  });
});

describe("cancellation", () => {
  it("an already aborted signal cancels at once", async () => {
    const { executor } = await fake.startKernel();
    const execution = await executor.execute("print:x", { signal: AbortSignal.abort() });
    expect(execution).toMatchObject({ status: "cancelled", stdout: "", started_at: null });
    expect(execution.error?.category).toBe("cancelled");
  });

  it("cancels a queued execution without running it", async () => {
    const { executor } = await fake.startKernel();
    const controller = new AbortController();
    const running = executor.execute("sleep:200\nprint:first");
    const queued = executor.execute("print:never", { signal: controller.signal });
    expect(executor.queueDepth).toBe(1);
    controller.abort();
    const cancelled = await queued;
    expect(cancelled.status).toBe("cancelled");
    expect(cancelled.error).toMatchObject({ name: "Cancelled", value: "cancelled before it started" });
    expect(executor.queueDepth).toBe(0);
    const first = await running;
    expect(first.status).toBe("completed");
    expect(first.stdout).toBe("first\n");
  });

  it("cancels a running execution by interrupting the kernel with SIGINT, keeping its state", async () => {
    const { kernel, executor } = await fake.startKernel();
    const pid = kernel.pid;
    const control: JupyterMessage[] = [];
    kernel.onMessage((message) => {
      if (message.channel === "control") control.push(message);
    });
    const execution = await cancelOnceStarted(executor, "print:started\nsleep:60000\nprint:not reached");
    expect(execution.status).toBe("cancelled");
    expect(execution.error).toMatchObject({
      name: "Cancelled",
      value: "cancelled: the kernel was interrupted",
      category: "cancelled",
    });
    expect(execution.stdout).toBe("started\n");
    expect(execution.outputs.at(-1)).toMatchObject({ type: "error", name: "KeyboardInterrupt" });
    expect(kernel.pid).toBe(pid);
    expect(control.filter((m) => m.header.msg_type === "interrupt_reply")).toEqual([]);
    expect((await executor.execute("print:still alive")).stdout).toBe("still alive\n");
  });

  it("with interrupt_mode message, interrupts with interrupt_request on control", async () => {
    const { kernel, executor } = await fake.startKernel({ name: "fake-message" });
    expect(kernel.spec.interrupt_mode).toBe("message");
    const pid = kernel.pid;
    const control: JupyterMessage[] = [];
    kernel.onMessage((message) => {
      if (message.channel === "control") control.push(message);
    });
    const execution = await cancelOnceStarted(executor, "print:started\nsleep:60000");
    expect(execution.status).toBe("cancelled");
    expect(execution.error?.value).toBe("cancelled: the kernel was interrupted");
    expect(execution.outputs.at(-1)).toMatchObject({ type: "error", name: "KeyboardInterrupt" });
    expect(control.map((m) => m.header.msg_type)).toEqual(["interrupt_reply"]);
    expect(kernel.pid).toBe(pid);
  });

  it("interrupt() while idle leaves the kernel usable", async () => {
    const { kernel, executor } = await fake.startKernel({ name: "fake-message" });
    await kernel.interrupt();
    const { kernel: signalled, executor: other } = await fake.startKernel();
    await signalled.interrupt();
    expect((await executor.execute("print:a")).status).toBe("completed");
    expect((await other.execute("print:b")).status).toBe("completed");
  });

  it("executor.dispose cancels what is queued and running", async () => {
    const { executor } = await fake.startKernel();
    const running = executor.execute("print:started\nsleep:60000", {
      onStdout: () => void executor.dispose(),
    });
    const queued = executor.execute("print:queued");
    const [a, b] = await Promise.all([running, queued]);
    expect([a.status, b.status]).toEqual(["cancelled", "cancelled"]);
    expect(a.error?.value).toBe("the executor was disposed");
    expect((await executor.execute("print:x")).status).toBe("cancelled");
  });
});

describe("restart", () => {
  it("replaces the process; the executor keeps working and the count starts over", async () => {
    const { kernel, executor } = await fake.startKernel();
    const pid = kernel.pid!;
    await executor.execute("print:1");
    expect((await executor.execute("print:2")).execution_count).toBe(2);
    const statuses: string[] = [];
    kernel.onStatus((status) => statuses.push(status));
    await kernel.restart();
    // Late busy/idle pairs of the start-up kernel_info requests may follow.
    expect(statuses.slice(0, 2)).toEqual(["restarting", "idle"]);
    expect(statuses.filter((s) => s !== "busy" && s !== "idle")).toEqual(["restarting"]);
    expect(kernel.pid).not.toBe(pid);
    expect(isProcessAlive(pid)).toBe(false);
    expect(fake.leftovers()).toEqual([kernel.pid]);
    const after = await executor.execute("print:after");
    expect(after).toMatchObject({ status: "completed", stdout: "after\n", execution_count: 1 });
  });

  it("executions submitted during a restart run once it is done", async () => {
    const { kernel, executor } = await fake.startKernel();
    const restarting = kernel.restart();
    const waiting = executor.execute("print:waited");
    expect(kernel.status).toBe("restarting");
    await restarting;
    await waitForStatus(kernel, "idle");
    expect(await waiting).toMatchObject({ status: "completed", stdout: "waited\n" });
  });
});

/** Runs `code` (which must print first) and aborts it as soon as its first output arrives. */
function cancelOnceStarted(executor: KernelExecutor, code: string): Promise<Execution> {
  const controller = new AbortController();
  return executor.execute(code, { signal: controller.signal, onStdout: () => controller.abort() });
}
