/**
 * A server SIGKILLed while a block runs, then restarted on the same data dir: every project,
 * block and execution is still there, the running block is FAILED and its execution `failed`
 * (never `running`), no kernel of the killed server survives, and blocks run again, their
 * kernel state rebuilt from the upstream blocks.
 */
import { rmSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { isProcessAlive, processesMatching } from "../support/processes.js";
import { type Block, describeResults, NotebookClient } from "./notebook-helpers.js";
import {
  cmdlineOf,
  kernelPids,
  pollUntilAsync,
  request,
  type Server,
  startServer,
} from "./server-helpers.js";

let server: Server | undefined;
let restarted: Server | undefined;

afterAll(async () => {
  await restarted?.stop();
  await server?.stop("SIGKILL");
  // The first server kept its dir for the restart.
  if (server) rmSync(server.root, { recursive: true, force: true });
});

describe("SIGKILL of the server mid-run", () => {
  it("keeps projects, blocks and history; fails the running block; leaves no kernel; runs again", async () => {
    server = await startServer({ poolSize: 0, users: ["alice"] });
    const alice = new NotebookClient(server, server.tokens.alice!);
    const { project, blocks } = await alice.project("survivor", [
      { source: "# Survives a crash", cell_type: "markdown" },
      "x = 41",
      "y = x + 1\nprint(y)",
      "import time\nprint('sleeping', flush=True)\ntime.sleep(600)",
      "never = 'ran'",
    ]);
    const [, bx, by, sleeper, idle] = blocks as [Block, Block, Block, Block, Block];
    const ran = await alice.runMany([bx.id, by.id]);
    expect(
      ran.results.map((r) => r.status),
      describeResults(ran.results),
    ).toEqual(["completed", "completed"]);
    await alice.patch(bx.id, { metadata: { note: "kept" } });

    // The sleeper runs; the request stays open until the server dies.
    const pending = request(server, "POST", `/api/v1/blocks/${sleeper.id}/execute`, {
      token: alice.token,
      body: {},
    }).catch((error: Error) => error);
    const running = await pollUntilAsync(async () => {
      const [block, history] = await Promise.all([alice.block(sleeper.id), alice.history(sleeper.id)]);
      return block.status === "RUNNING" && history.length === 1;
    }, 20_000);
    expect(running, "the sleeping block shows RUNNING with an execution").toBe(true);
    const [inFlight] = await alice.history(sleeper.id);
    expect(["queued", "running"]).toContain(inFlight!.status);
    const kernels = kernelPids(server);
    expect(kernels.length, "the project's kernel").toBeGreaterThanOrEqual(1);
    for (const pid of kernels) expect(cmdlineOf(pid)).toContain(server.runtimeDir);

    const stopped = await server.stop("SIGKILL", { keepDir: true });
    expect(stopped.signal).toBe("SIGKILL");
    // Nothing of the killed server is left: its tree, its kernels, anything naming its runtime dir.
    expect(stopped.survivors).toEqual([]);
    for (const pid of kernels) expect(isProcessAlive(pid), cmdlineOf(pid)).toBe(false);
    expect(processesMatching(server.runtimeDir)).toEqual([]);
    const cut = await pending;
    if (!(cut instanceof Error)) expect(cut.status).not.toBe(200);

    restarted = await startServer({
      reuse: { root: server.root, dataDir: server.dataDir, runtimeDir: server.runtimeDir },
      users: [],
      poolSize: 0,
    });
    const again = new NotebookClient(restarted, alice.token);

    // The project and its blocks, as they were (the running one aside).
    const projects = (await again.get("/projects")).projects as Array<{ id: string }>;
    expect(projects.map((p) => p.id)).toEqual([project.id]);
    expect(await again.getProject(project.id)).toMatchObject({
      name: "survivor",
      block_count: 5,
      session_id: null,
    });
    const after = await again.blocks(project.id);
    expect(after.map((b) => b.id)).toEqual(blocks.map((b) => b.id));
    expect(after.map((b) => b.source)).toEqual(blocks.map((b) => b.source));
    expect(after.map((b) => b.status)).toEqual(["IDLE", "COMPLETED", "COMPLETED", "FAILED", "IDLE"]);
    expect(after[1]!.metadata).toEqual({ note: "kept" });
    expect(after[3]!.status_reason, "why the block failed").toEqual(expect.any(String));
    expect(after[3]!.status_reason!.length).toBeGreaterThan(0);

    // The history: the finished runs intact, the cut one failed with the reason.
    const historyX = await again.history(bx.id);
    expect(historyX.map((e) => e.id)).toEqual([ran.results[0]!.execution!.id]);
    const historyY = await again.history(by.id);
    expect(historyY).toHaveLength(1);
    expect(historyY[0]).toMatchObject({ status: "completed", stdout: "42\n", block_id: by.id });
    const [failed, ...older] = await again.history(sleeper.id);
    expect(older).toEqual([]);
    expect(failed).toMatchObject({ id: inFlight!.id, block_id: sleeper.id, status: "failed" });
    expect(failed!.error?.value, "the reason").toEqual(expect.any(String));
    expect(failed!.finished_at).toEqual(expect.any(String));
    expect(await again.get(`/executions/${inFlight!.id}`)).toMatchObject({ status: "failed" });
    for (const block of after) {
      for (const execution of await again.history(block.id)) {
        expect(["queued", "running"], `execution of block ${block.position}`).not.toContain(execution.status);
      }
    }
    expect(await again.history(idle.id)).toEqual([]);

    // The context and the export say so too.
    const context = await again.context(project.id);
    expect(context.status).toBe(200);
    expect(context.text).toContain("FAILED");
    const exported = await again.exportNotebook(project.id);
    expect(exported.notebook.cells[2].outputs).toEqual([
      expect.objectContaining({ output_type: "stream", text: "42\n" }),
    ]);

    // Blocks run again: a fresh kernel, rebuilt from the upstream blocks.
    await again.patch(sleeper.id, { source: "z = y * 2\nprint(z)" });
    const rerun = await again.run(sleeper.id);
    const summary = describeResults([rerun]);
    expect(
      rerun.rebuilt.map((r) => r.block_id),
      summary,
    ).toEqual([bx.id, by.id]);
    expect(
      rerun.rebuilt.every((r) => r.status === "completed"),
      summary,
    ).toBe(true);
    expect(rerun.status, summary).toBe("completed");
    expect(rerun.execution!.stdout).toBe("84\n");
    expect(rerun.block.status).toBe("COMPLETED");
    expect((await again.getProject(project.id)).session_id).toEqual(expect.any(String));
    expect((await again.history(sleeper.id)).map((e) => e.status)).toEqual(["completed", "failed"]);
    expect((await again.run(idle.id)).status).toBe("completed");
  });
});
