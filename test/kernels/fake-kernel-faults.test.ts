/**
 * Fault tests: a fake kernel that hangs, dies, floods, forges signatures, sends garbage, loses
 * its heartbeat, fails to start or refuses to shut down. Every wait is bounded by the engine's
 * own (small) timeouts or by `within`/`waitForStatus`.
 */
import { existsSync, rmSync } from "node:fs";
import { readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { RejectReason } from "../../src/kernels/codec.js";
import { KernelStartError } from "../../src/kernels/errors.js";
import type { StartKernelOptions } from "../../src/kernels/kernel-manager.js";
import type { Channel } from "../../src/kernels/messages.js";
import { createFakeManager, type FakeManager, waitForStatus, within } from "../fakes/fake-kernelspec.js";
import { isProcessAlive } from "../support/processes.js";

let fake: FakeManager;

beforeAll(async () => {
  fake = await createFakeManager();
});

afterEach(async () => {
  await fake.disposeAll();
  expect(fake.leftovers()).toEqual([]);
  expect(await readdir(fake.runtimeDir)).toEqual([]);
});

afterAll(async () => {
  await fake?.cleanup();
});

describe("timeouts", () => {
  it("an execution that never replies times out, and the kernel is restarted", async () => {
    const { kernel, executor } = await fake.startKernel({}, { interruptGraceMs: 200 });
    const pid = kernel.pid!;
    const execution = await executor.execute("hang", { timeoutMs: 200 });
    expect(execution.status).toBe("timed_out");
    expect(execution.limit).toBe("time");
    expect(execution.limits.time_ms).toBe(200);
    expect(execution.error).toMatchObject({ name: "TimeoutError", category: "timeout" });
    expect(execution.error?.value).toContain("ignored the interrupt; the kernel was restarted");

    await waitForStatus(kernel, "idle");
    expect(kernel.pid).not.toBe(pid);
    expect(isProcessAlive(pid)).toBe(false);
    expect(fake.leftovers()).toEqual([kernel.pid]);
    const next = await executor.execute("print:fresh");
    expect(next).toMatchObject({ status: "completed", stdout: "fresh\n", execution_count: 1 });
  });

  it("an interruptible execution times out and the kernel keeps its process", async () => {
    const { kernel, executor } = await fake.startKernel();
    const pid = kernel.pid;
    // The limit must outlast the request's trip to the kernel: an interrupt that arrives before
    // the code runs is ignored (as by a real kernel) and would turn this into a restart.
    const execution = await executor.execute("print:start\nsleep:60000", { timeoutMs: 1000 });
    expect(execution.status).toBe("timed_out");
    expect(execution.error?.value).toContain("was interrupted; the kernel keeps its state");
    expect(execution.error?.traceback.join("\n")).toContain("KeyboardInterrupt");
    expect(kernel.pid).toBe(pid);
    expect(kernel.status).toBe("idle");
    expect((await executor.execute("print:after")).execution_count).toBe(2);
  });

  it("an execute_reply without the idle status does not complete the execution", async () => {
    const { kernel, executor } = await fake.startKernel(
      { envOverrides: { FAKE_NO_IDLE: "1" } },
      { interruptGraceMs: 100 },
    );
    const replies: string[] = [];
    kernel.onMessage((message) => {
      if (message.header.msg_type === "execute_reply") replies.push(String(message.content.status));
    });
    const execution = await executor.execute("print:replied", { timeoutMs: 300 });
    expect(replies).toEqual(["ok"]);
    expect(execution.status).toBe("timed_out");
    expect(execution.stdout).toBe("replied\n");
  });

  it("a hung execution also ends the ones queued behind it", async () => {
    const { executor } = await fake.startKernel({}, { interruptGraceMs: 100 });
    const hung = executor.execute("hang", { timeoutMs: 100 });
    const queued = executor.execute("print:behind");
    const [first, second] = await within(Promise.all([hung, queued]), 20_000, "the executions");
    expect(first.status).toBe("timed_out");
    expect(second.status).toBe("cancelled");
    expect(second.error?.value).toContain(first.id);
  });
});

describe("kernel death", () => {
  it("a kernel dying mid-run fails the execution with its exit code and stderr tail", async () => {
    const { kernel, executor } = await fake.startKernel();
    const pid = kernel.pid!;
    const dying = executor.execute("die:3", { stopOnError: false });
    const queued = [executor.execute("print:never"), executor.execute("print:never again")];
    const [first, ...rest] = await within(Promise.all([dying, ...queued]), 20_000, "the executions");

    expect(first.status).toBe("failed");
    expect(first.error?.category).toBe("kernel_died");
    expect(first.error?.value).toContain("the kernel exited with code 3");
    expect(first.error?.traceback.join("\n")).toContain("dying mid-run with exit code 3");
    for (const execution of rest) {
      expect(execution.status).toBe("failed");
      expect(execution.error?.category).toBe("kernel_died");
      expect(execution.error?.value).toContain("it died before this execution could run");
    }
    expect(kernel.status).toBe("dead");
    expect(kernel.death).toMatchObject({ reason: "exited", exit_code: 3, signal: null });
    expect(kernel.death?.stderr).toContain("dying mid-run");
    expect(isProcessAlive(pid)).toBe(false);

    const refused = await executor.execute("print:x");
    expect(refused.status).toBe("failed");
    expect(refused.error?.value).toContain("restart it first");

    await kernel.restart();
    expect(kernel.status).toBe("idle");
    expect(kernel.death).toBeUndefined();
    expect((await executor.execute("print:revived")).stdout).toBe("revived\n");
  });

  it("with stopOnError by default, the executions behind the dead one are aborted", async () => {
    const { executor } = await fake.startKernel();
    const dying = executor.execute("die:5");
    const queued = executor.execute("print:never");
    const [first, second] = await within(Promise.all([dying, queued]), 20_000, "the executions");
    expect(first.status).toBe("failed");
    expect(second.status).toBe("cancelled");
    expect(second.error?.value).toContain(first.id);
  });

  it("a kernel killed while idle is reported dead with the signal", async () => {
    const { kernel, executor } = await fake.startKernel();
    const deadSeen = waitForStatus(kernel, "dead");
    process.kill(kernel.pid!, "SIGKILL");
    await deadSeen;
    expect(kernel.death).toMatchObject({ reason: "exited", exit_code: null, signal: "SIGKILL" });
    const execution = await executor.execute("print:x");
    expect(execution.error?.value).toContain("the kernel was killed by SIGKILL");
  });

  it("a lost heartbeat marks the kernel dead and fails the running execution", async () => {
    const { kernel, executor } = await fake.startKernel({
      envOverrides: { FAKE_NO_HEARTBEAT: "1" },
      heartbeat: { intervalMs: 50, timeoutMs: 100, maxMissed: 2 },
    });
    const pid = kernel.pid!;
    const execution = await within(executor.execute("print:working\nsleep:60000"), 20_000, "the execution");
    expect(kernel.status).toBe("dead");
    expect(kernel.death?.reason).toBe("heartbeat");
    expect(execution.status).toBe("failed");
    expect(execution.error).toMatchObject({ name: "KernelDied", category: "kernel_died" });
    expect(execution.error?.value).toContain("stopped answering its heartbeat");
    await kernel.dispose();
    expect(isProcessAlive(pid)).toBe(false);
  });
});

describe("output floods", () => {
  it("a flood of stream messages is truncated to its head and tail", async () => {
    const { executor } = await fake.startKernel();
    const lines = Array.from({ length: 3000 }, (_, i) => `line ${i}\n`);
    const total = lines.join("").length;
    const execution = await executor.execute("flood:3000", { outputBytes: 1000 });
    expect(execution.status).toBe("completed");
    expect(execution.truncated).toBe(true);
    expect(execution.stdout_bytes).toBe(total);
    expect(execution.dropped_bytes).toBe(total - 1000);
    expect(execution.stdout.startsWith("line 0\nline 1\nline 2\n")).toBe(true);
    expect(execution.stdout.endsWith("line 2998\nline 2999\n")).toBe(true);
    expect(execution.stdout).toContain(`[… ${total - 1000} bytes of output dropped …]`);
    expect(execution.outputs).toHaveLength(2);
    const [head, tail] = execution.outputs;
    expect(head?.type === "stream" && head.text.startsWith("line 0\n")).toBe(true);
    expect(tail?.type === "stream" && tail.text).toMatch(/^\n\[… \d+ bytes of stdout dropped …\]\n/);
    expect(tail?.type === "stream" && tail.text.endsWith("line 2999\n")).toBe(true);
  });
});

describe("hostile or broken messages", () => {
  async function startWithRejectLog(options: StartKernelOptions = {}) {
    const rejects: Array<[Channel, RejectReason, string]> = [];
    const started = await fake.startKernel({
      ...options,
      onReject: ({ channel, reason, detail }) => rejects.push([channel, reason, detail]),
    });
    return { ...started, rejects };
  }

  it("drops messages with a wrong or missing signature, including a forged reply", async () => {
    const { kernel, executor, rejects } = await startWithRejectLog();
    const execution = await executor.execute("badsig");
    // The forged execute_reply said "error": had it been believed, this would have failed.
    expect(execution.status).toBe("completed");
    expect(execution.stdout).toBe("genuine\n");
    expect(kernel.counters?.rejected.bad_signature).toBe(3);
    expect(rejects).toEqual(
      expect.arrayContaining([
        ["iopub", "bad_signature", "HMAC mismatch"],
        ["iopub", "bad_signature", "unsigned"],
        ["shell", "bad_signature", "HMAC mismatch"],
      ]),
    );
    expect((await executor.execute("print:next")).stdout).toBe("next\n");
  });

  it("drops an oversized message, counted as too_large, shown as an error output in its execution", async () => {
    const { kernel, executor, rejects } = await startWithRejectLog({ maxMessageBytes: 10_000 });
    const big = await within(executor.execute("big:50000\nprint:after big"), 20_000, "the execution");
    expect(big.status).toBe("completed");
    expect(big.stdout).toBe("after big\n");
    expect(big.truncated).toBe(true);
    expect(big.dropped_bytes).toBeGreaterThan(50_000);
    expect(big.outputs[0]).toMatchObject({ type: "error", name: "OutputTooLarge" });
    expect((big.outputs[0] as { value: string }).value).toMatch(
      /^a stream of \d+ bytes from the kernel was dropped/,
    );
    expect(big.outputs[1]).toEqual({ type: "stream", name: "stdout", text: "after big\n" });
    const split = await within(
      executor.execute("buffers:4:3000\nprint:after buffers"),
      20_000,
      "the execution",
    );
    expect(split.status).toBe("completed");
    expect(split.outputs.map((o) => o.type)).toEqual(["error", "stream"]);
    expect(kernel.counters?.rejected.too_large).toBe(2);
    expect(rejects).toEqual([
      ["iopub", "too_large", expect.stringMatching(/^\d+ bytes > 10000$/)],
      ["iopub", "too_large", expect.stringMatching(/^\d+ bytes > 10000$/)],
    ]);
  });

  it("drops a replayed message", async () => {
    const { kernel, executor, rejects } = await startWithRejectLog();
    const execution = await executor.execute("replay");
    expect(execution.stdout).toBe("once\n");
    expect(kernel.counters?.rejected.replayed).toBe(1);
    expect(rejects).toEqual([["iopub", "replayed", "signature seen before"]]);
  });

  it("drops malformed frames on iopub and shell, counting each reason, and keeps working", async () => {
    const { kernel, executor, rejects } = await startWithRejectLog();
    const received = kernel.counters!.received;
    const execution = await executor.execute("garbage\nprint:survived");
    expect(execution.status).toBe("completed");
    expect(execution.stdout).toBe("survived\n");
    expect(kernel.counters?.rejected).toEqual({
      no_delimiter: 2,
      too_few_frames: 2,
      bad_signature: 0,
      replayed: 0,
      bad_json: 2,
      bad_header: 2,
      too_large: 0,
    });
    for (const channel of ["iopub", "shell"] as const) {
      expect(rejects.filter(([c]) => c === channel).map(([, reason]) => reason)).toEqual([
        "no_delimiter",
        "too_few_frames",
        "bad_json",
        "bad_header",
      ]);
    }
    expect(kernel.counters!.received).toBeGreaterThan(received);
    expect((await executor.execute("print:again")).stdout).toBe("again\n");
  });
});

describe("start failures", () => {
  it("a kernel that exits on start fails with KernelStartError carrying its stderr", async () => {
    const error = await fake.manager
      .start({ name: "fake", envOverrides: { FAKE_FAIL_ON_START: "1" } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KernelStartError);
    const startError = error as KernelStartError;
    expect(startError.code).toBe("KERNEL_START_FAILED");
    expect(startError.message).toMatch(/exited|exit code 1/);
    expect(startError.message).toContain("FAKE_FAIL_ON_START is set");
    expect(startError.data?.stderr).toContain("FAKE_FAIL_ON_START is set");
    expect(fake.manager.kernels).toEqual([]);
  });

  it("a start whose port was taken meanwhile is retried with fresh ports", async () => {
    const marker = join(tmpdir(), `runcell-port-taken-${process.pid}-${Date.now()}`);
    const kernel = await fake.manager.start({ name: "fake", envOverrides: { FAKE_PORT_TAKEN_ONCE: marker } });
    try {
      expect(existsSync(marker)).toBe(true); // the first attempt did fail
      expect(kernel.status).toBe("idle");
    } finally {
      await kernel.dispose();
      rmSync(marker, { force: true });
    }
  });

  it("a kernel slower than startTimeoutMs fails with KernelStartError and leaves no process", async () => {
    const error = await fake.manager
      .start({ name: "fake", envOverrides: { FAKE_STARTUP_DELAY_MS: "60000" }, startTimeoutMs: 300 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KernelStartError);
    expect((error as Error).message).toContain("did not answer kernel_info_request within 300 ms");
    expect(fake.leftovers()).toEqual([]);
    expect(await readdir(fake.runtimeDir)).toEqual([]);
  });

  it("an aborted start fails and leaves no process", async () => {
    const controller = new AbortController();
    const starting = fake.manager.start({
      name: "fake",
      envOverrides: { FAKE_STARTUP_DELAY_MS: "60000" },
      signal: controller.signal,
    });
    controller.abort();
    await expect(starting).rejects.toBeInstanceOf(KernelStartError);
    expect(fake.leftovers()).toEqual([]);
  });

  it("a restart whose process exits on start marks the kernel dead and ends waiting executions", async () => {
    const envFile = join(fake.runtimeDir, "..", `${fake.tag}-restart-exits.env`);
    try {
      const { kernel, executor } = await fake.startKernel({ envOverrides: { FAKE_ENV_FILE: envFile } });
      await writeFile(envFile, "FAKE_FAIL_ON_START=1\n");
      const restarting = kernel.restart().catch((e: unknown) => e);
      const waiting = executor.execute("print:waiting");
      expect(await within(restarting, 20_000, "the restart")).toBeInstanceOf(KernelStartError);
      expect(kernel.status).toBe("dead");
      expect(kernel.death?.reason).toBe("start_failed");
      expect(kernel.death?.stderr).toContain("FAKE_FAIL_ON_START is set");
      const execution = await within(waiting, 20_000, "the execution queued during the restart");
      expect(execution.status).toBe("failed");
      expect(execution.error?.category).toBe("kernel_died");
    } finally {
      await rm(envFile, { force: true });
    }
  });

  it("an aborted restart marks the kernel dead, tells listeners, and ends waiting executions", async () => {
    const envFile = join(fake.runtimeDir, "..", `${fake.tag}-restart-slow.env`);
    try {
      const { kernel, executor } = await fake.startKernel({ envOverrides: { FAKE_ENV_FILE: envFile } });
      await writeFile(envFile, "FAKE_STARTUP_DELAY_MS=60000\n");
      const deadSeen = waitForStatus(kernel, "dead");
      const controller = new AbortController();
      const restarting = kernel.restart({ signal: controller.signal }).catch((e: unknown) => e);
      const waiting = executor.execute("print:waiting");
      controller.abort();
      expect(await within(restarting, 20_000, "the restart")).toBeInstanceOf(KernelStartError);
      await deadSeen;
      expect(kernel.death?.reason).toBe("start_failed");
      expect(fake.leftovers()).toEqual([]);
      const execution = await within(waiting, 10_000, "the execution queued during the restart");
      expect(execution.status).toBe("failed");
      expect(execution.error?.category).toBe("kernel_died");
    } finally {
      await rm(envFile, { force: true });
    }
  });
});

describe("shutdown", () => {
  it("a kernel ignoring shutdown_request and SIGTERM is killed with SIGKILL", async () => {
    const { kernel } = await fake.startKernel({
      envOverrides: { FAKE_IGNORE_SHUTDOWN: "1" },
      shutdownStepMs: 200,
    });
    const pid = kernel.pid!;
    expect(await within(kernel.dispose(), 20_000, "dispose")).toBe("sigkill");
    expect(isProcessAlive(pid)).toBe(false);
    expect(fake.leftovers()).toEqual([]);
    expect(kernel.status).toBe("dead");
  });

  it("disposing a dead kernel reports already_dead", async () => {
    const { kernel, executor } = await fake.startKernel();
    await executor.execute("die:0");
    await waitForStatus(kernel, "dead");
    expect(await kernel.dispose()).toBe("already_dead");
  });

  it("disposeAll stops every kernel of the manager at once", async () => {
    // Started one after the other: concurrent starts can race for the same free port.
    const kernels = [await fake.startKernel(), await fake.startKernel()];
    const pids = kernels.map(({ kernel }) => kernel.pid!);
    expect(fake.leftovers().sort()).toEqual([...pids].sort());
    await fake.manager.disposeAll();
    expect(fake.manager.kernels).toEqual([]);
    expect(pids.filter(isProcessAlive)).toEqual([]);
  });
});
