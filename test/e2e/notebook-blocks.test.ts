/**
 * AI notebooks over HTTP with real kernels: running one block and many, ordering, failures,
 * STALE propagation and its limits, run-stale, history, ownership, kernel-state rebuild after a
 * death or a stop, and plots stored as artifacts.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Block, describeResults, NotebookClient } from "./notebook-helpers.js";
import { expectStatus, pollUntilAsync, resultText, type Server, startServer } from "./server-helpers.js";

let server: Server;
let alice: NotebookClient;
let bob: NotebookClient;

beforeAll(async () => {
  server = await startServer({ poolSize: 0 });
  alice = new NotebookClient(server, server.tokens.alice!);
  bob = new NotebookClient(server, server.tokens.bob!);
});
afterEach(async () => {
  // Each project holds a kernel: keep at most a test's worth alive.
  await alice?.cleanup();
  await bob?.cleanup();
});
afterAll(async () => {
  await server?.stop();
});

const ids = (blocks: Block[]) => blocks.map((b) => b.id);
type Nine<T> = [T, T, T, T, T, T, T, T, T];

describe("running blocks", () => {
  it("runs one block at a time in the project's kernel, keeping state between blocks", async () => {
    const { project, blocks } = await alice.project("one", ["a = 20", "a * 2 + 2"]);
    const [define, use] = blocks as [Block, Block];
    expect(project).toMatchObject({ name: "one", kernel: "python3", session_id: null });
    expect(await alice.getProject(project.id)).toMatchObject({ block_count: 2, session_id: null });
    expect(define).toMatchObject({ status: "IDLE", position: 0, cell_type: "code", defines: ["a"] });
    expect(use).toMatchObject({ status: "IDLE", position: 1, uses: ["a"] });

    const first = await alice.run(define.id);
    expect(first, describeResults([first])).toMatchObject({
      block_id: define.id,
      status: "completed",
      rebuilt: [],
      execution: { status: "completed", block_id: define.id, code: "a = 20" },
      block: { id: define.id, status: "COMPLETED", status_reason: null },
    });
    expect(first.block.last_execution_id).toBe(first.execution!.id);

    const second = await alice.run(use.id);
    expect(second.status, describeResults([second])).toBe("completed");
    expect(resultText(second.execution!)).toBe("42");
    expect(second.rebuilt).toEqual([]);
    expect(second.block.execution_count).toBe(second.execution!.execution_count);
    expect(second.execution!.execution_count).toBeGreaterThan(first.execution!.execution_count!);

    // The project now has a kernel session, and GET /blocks/{id} shows the run.
    expect((await alice.getProject(project.id)).session_id).toEqual(expect.any(String));
    expect(await alice.block(use.id)).toMatchObject({
      status: "COMPLETED",
      last_execution_id: second.execution!.id,
    });
  });

  it("execute-multiple runs blocks in the order given, not the project's order", async () => {
    const { blocks } = await alice.project("many", [
      "order = []",
      "order.append('p1')",
      "order.append('p2')",
      "print(order)",
    ]);
    const [init, p1, p2, show] = blocks as [Block, Block, Block, Block];
    const { results, project_id } = await alice.runMany([init.id, p2.id, p1.id, show.id]);
    expect(project_id).toBe(init.project_id);
    expect(results.map((r) => r.block_id)).toEqual([init.id, p2.id, p1.id, show.id]);
    expect(
      results.map((r) => r.status),
      describeResults(results),
    ).toEqual(["completed", "completed", "completed", "completed"]);
    expect(results[3]!.execution!.stdout).toBe("['p2', 'p1']\n");
    const counts = results.map((r) => r.execution!.execution_count!);
    expect([...counts].sort((x, y) => x - y)).toEqual(counts);
    expect(Object.values(await alice.statuses(init.project_id))).toEqual([
      "COMPLETED",
      "COMPLETED",
      "COMPLETED",
      "COMPLETED",
    ]);
  });

  it("inserts at a position and moves blocks, keeping positions dense; a move changes no status", async () => {
    const { project, blocks } = await alice.project("order", ["A = 'a'", "B = 'b'", "C = 'c'"]);
    const [a, b, c] = blocks as [Block, Block, Block];
    const inserted = await alice.addBlock(project.id, "D = 'd'", 1);
    expect(inserted.position).toBe(1);
    const first = await alice.addBlock(project.id, "E = 'e'", 0);
    expect(first.position).toBe(0);
    const order = async () => {
      const listed = await alice.blocks(project.id);
      expect(listed.map((block) => block.position)).toEqual(listed.map((_, i) => i));
      return ids(listed);
    };
    expect(await order()).toEqual([first.id, a.id, inserted.id, b.id, c.id]);

    const ran = await alice.run(c.id);
    expect(ran.status, describeResults([ran])).toBe("completed");
    const moved = await alice.patch(c.id, { position: 0 });
    expect(moved).toMatchObject({ position: 0, status: "COMPLETED" });
    expect(await order()).toEqual([c.id, first.id, a.id, inserted.id, b.id]);
    // Past the end is clamped to the end.
    expect((await alice.patch(first.id, { position: 999 })).position).toBe(4);
    expect(await order()).toEqual([c.id, a.id, inserted.id, b.id, first.id]);
    await expectStatus(204, server, "DELETE", `/api/v1/blocks/${inserted.id}`, { token: alice.token });
    expect(await order()).toEqual([c.id, a.id, b.id, first.id]);
    expect((await alice.block(c.id)).status).toBe("COMPLETED");
    expect((await alice.getProject(project.id)).block_count).toBe(4);
  });

  it("a failure stops execute-multiple (the rest not_run, with a reason); continue_on_error runs on", async () => {
    const { project, blocks } = await alice.project("failing", [
      "ok1 = 1",
      "raise ValueError('boom')",
      "ok3 = 3",
      "ok4 = ok3 + 1",
    ]);
    const [ok1, bad, ok3, ok4] = blocks as [Block, Block, Block, Block];
    const { results } = await alice.runMany(ids(blocks));
    const summary = describeResults(results);
    expect(
      results.map((r) => r.status),
      summary,
    ).toEqual(["completed", "failed", "not_run", "not_run"]);
    expect(results[1]!.execution).toMatchObject({
      status: "failed",
      block_id: bad.id,
      error: { name: "ValueError", value: "boom", category: "runtime" },
    });
    for (const skipped of results.slice(2)) {
      expect(skipped.execution, summary).toBeNull();
      expect(skipped.reason, summary).toEqual(expect.any(String));
      expect(skipped.reason, summary).toContain(bad.id);
    }
    const after = await alice.blocks(project.id);
    expect(after.map((b) => b.status)).toEqual(["COMPLETED", "FAILED", "IDLE", "IDLE"]);
    expect(after[1]!.status_reason).toContain("ValueError: boom");
    expect(await alice.history(ok3.id)).toEqual([]);
    expect(await alice.history(ok1.id)).toHaveLength(1);

    const again = await alice.runMany([bad.id, ok3.id, ok4.id], { continue_on_error: true });
    expect(
      again.results.map((r) => r.status),
      describeResults(again.results),
    ).toEqual(["failed", "completed", "completed"]);
    expect(again.results.every((r) => r.reason === undefined)).toBe(true);
    expect(await alice.statuses(project.id)).toEqual({
      [ok1.id]: "COMPLETED",
      [bad.id]: "FAILED",
      [ok3.id]: "COMPLETED",
      [ok4.id]: "COMPLETED",
    });
    expect(await alice.history(bad.id)).toHaveLength(2);
  });

  it("refuses execute-multiple across projects, empty, or of a markdown block", async () => {
    const one = await alice.project("p1", ["x = 1", { source: "# title", cell_type: "markdown" }]);
    const two = await alice.project("p2", ["y = 2"]);
    const mixed = await alice.request("POST", "/blocks/execute-multiple", {
      block_ids: [one.blocks[0]!.id, two.blocks[0]!.id],
    });
    expect(mixed.status, mixed.text).toBe(400);
    const empty = await alice.request("POST", "/blocks/execute-multiple", { block_ids: [] });
    expect(empty.status, empty.text).toBe(400);
    const markdown = await alice.request("POST", `/blocks/${one.blocks[1]!.id}/execute`, {});
    expect(markdown.status, markdown.text).toBe(409);
    // Nothing ran.
    expect(Object.values(await alice.statuses(one.project.id))).toEqual(["IDLE", "IDLE"]);
    expect(Object.values(await alice.statuses(two.project.id))).toEqual(["IDLE"]);
  });
});

describe("STALE", () => {
  it("propagates through a chain; unrelated blocks stay COMPLETED, never-run ones IDLE; run-stale fixes it", async () => {
    const { project, blocks } = await alice.project("chain", [
      "base = 1",
      "mid = base + 1",
      "top = mid + 1\nprint(top)",
      "other = 'unrelated'",
      "late = top * 10",
    ]);
    const [a, b, c, unrelated, never] = blocks as [Block, Block, Block, Block, Block];
    const ran = await alice.runMany([a.id, b.id, c.id, unrelated.id]);
    expect(
      ran.results.map((r) => r.status),
      describeResults(ran.results),
    ).toEqual(["completed", "completed", "completed", "completed"]);
    expect(ran.results[2]!.execution!.stdout).toBe("3\n");

    // The same source again changes nothing.
    expect((await alice.patch(a.id, { source: "base = 1" })).status).toBe("COMPLETED");
    expect(Object.values(await alice.statuses(project.id))).toEqual([
      "COMPLETED",
      "COMPLETED",
      "COMPLETED",
      "COMPLETED",
      "IDLE",
    ]);

    const edited = await alice.patch(a.id, { source: "base = 10" });
    expect(edited).toMatchObject({ status: "STALE", source: "base = 10", defines: ["base"] });
    expect(edited.status_reason).toEqual(expect.any(String));
    const after = await alice.blocks(project.id);
    expect(Object.fromEntries(after.map((x) => [x.id, x.status]))).toEqual({
      [a.id]: "STALE",
      [b.id]: "STALE",
      [c.id]: "STALE",
      [unrelated.id]: "COMPLETED",
      [never.id]: "IDLE",
    });
    // Each says which block changed.
    expect(after[1]!.status_reason).toContain(a.id);
    expect(after[2]!.status_reason).toContain(a.id);

    const stale = await alice.runStale(project.id);
    expect(stale.project_id).toBe(project.id);
    expect(
      stale.results.map((r) => r.block_id),
      describeResults(stale.results),
    ).toEqual([a.id, b.id, c.id]);
    expect(stale.results.map((r) => r.status)).toEqual(["completed", "completed", "completed"]);
    expect(stale.results[2]!.execution!.stdout).toBe("12\n");
    expect(Object.values(await alice.statuses(project.id))).toEqual([
      "COMPLETED",
      "COMPLETED",
      "COMPLETED",
      "COMPLETED",
      "IDLE",
    ]);
    // Only the stale blocks ran.
    expect(await alice.history(unrelated.id)).toHaveLength(1);
    expect(await alice.history(never.id)).toHaveLength(0);
    expect(await alice.history(c.id)).toHaveLength(2);
    // Nothing left to run.
    expect((await alice.runStale(project.id)).results).toEqual([]);
  });

  it("follows functions, classes, imports and augmented assignments", async () => {
    const { project, blocks } = await alice.project("kinds", [
      "k = 2",
      "def f():\n    return k",
      "r = f()\nprint(r)",
      "import math as m",
      "class Circle:\n    def area(self, radius):\n        return m.pi * radius ** 2",
      "area = Circle().area(1)\nprint(round(area, 2))",
      "x = 1",
      "x += 1\nprint(x)",
      "print(len('builtins only'))",
    ]);
    const [k, f, useF, imp, cls, useCls, x, aug, builtins] = blocks as Array<Block> as Nine<Block>;
    expect(f).toMatchObject({ defines: ["f"], uses: ["k"] });
    expect(useF.uses).toContain("f");
    expect(imp.defines).toEqual(["m"]);
    expect(cls.defines).toEqual(["Circle"]);
    expect(cls.uses).toContain("m");
    expect(useCls.uses).toContain("Circle");
    expect(aug.uses).toContain("x");
    expect(aug.defines).toContain("x");
    expect(builtins.uses).toEqual([]);

    const all = await alice.runMany(ids(blocks));
    expect(
      all.results.every((r) => r.status === "completed"),
      describeResults(all.results),
    ).toBe(true);
    expect(all.results[2]!.execution!.stdout).toBe("2\n");
    expect(all.results[5]!.execution!.stdout).toBe("3.14\n");
    expect(all.results[7]!.execution!.stdout).toBe("2\n");

    const staleOnly = async () =>
      (await alice.blocks(project.id)).filter((b) => b.status === "STALE").map((b) => b.id);

    // k is read inside f's body: editing k stales f, and through f its user.
    await alice.patch(k.id, { source: "k = 3" });
    expect(await staleOnly()).toEqual([k.id, f.id, useF.id]);
    const fixed = await alice.runStale(project.id);
    expect(
      fixed.results.map((r) => r.block_id),
      describeResults(fixed.results),
    ).toEqual([k.id, f.id, useF.id]);
    expect(fixed.results[2]!.execution!.stdout).toBe("3\n");
    expect(await staleOnly()).toEqual([]);

    // An import used inside a method: the class and its user.
    await alice.patch(imp.id, { source: "import math as m\nTAU = m.tau" });
    expect(await staleOnly()).toEqual([imp.id, cls.id, useCls.id]);
    expect((await alice.runStale(project.id)).results.map((r) => r.status)).toEqual([
      "completed",
      "completed",
      "completed",
    ]);

    // `x += 1` depends on x's definer.
    await alice.patch(x.id, { source: "x = 5" });
    expect(await staleOnly()).toEqual([x.id, aug.id]);
    const augmented = await alice.runStale(project.id);
    expect(
      augmented.results.map((r) => r.execution?.stdout),
      describeResults(augmented.results),
    ).toEqual(["", "6\n"]);
    expect((await alice.block(builtins.id)).status).toBe("COMPLETED");
  });

  it("re-running a block with a changed source stales its dependents again; a plain rerun does not", async () => {
    const { project, blocks } = await alice.project("rerun", ["v = 1", "w = v * 2\nprint(w)"]);
    const [definer, user] = blocks as [Block, Block];
    await alice.runMany(ids(blocks));
    await alice.patch(definer.id, { source: "v = 5" });
    expect(Object.values(await alice.statuses(project.id))).toEqual(["STALE", "STALE"]);

    // The user runs first, against the old v still in the kernel, and is COMPLETED again...
    const early = await alice.run(user.id);
    expect(early.execution!.stdout).toBe("2\n");
    expect(early.block.status).toBe("COMPLETED");
    // ...until the edited definer runs: what the user computed is out of date.
    const rerun = await alice.run(definer.id);
    expect(rerun.status, describeResults([rerun])).toBe("completed");
    const after = await alice.block(user.id);
    expect(after.status).toBe("STALE");
    expect(after.status_reason).toContain(definer.id);

    expect((await alice.run(user.id)).execution!.stdout).toBe("10\n");
    // Same source again: nothing becomes stale.
    await alice.run(definer.id);
    expect(Object.values(await alice.statuses(project.id))).toEqual(["COMPLETED", "COMPLETED"]);
  });

  it("deleting a block that ran stales the blocks that used its names", async () => {
    const { project, blocks } = await alice.project("delete", ["rate = 3", "cost = rate * 2", "label = 'x'"]);
    const [rate, cost, label] = blocks as [Block, Block, Block];
    await alice.runMany(ids(blocks));
    await expectStatus(204, server, "DELETE", `/api/v1/blocks/${rate.id}`, { token: alice.token });
    expect(await alice.statuses(project.id)).toEqual({ [cost.id]: "STALE", [label.id]: "COMPLETED" });
    expect((await alice.block(cost.id)).position).toBe(0);
    expect((await alice.request("GET", `/blocks/${rate.id}`)).status).toBe(404);
  });

  it("run-stale stops at a failing stale block unless continue_on_error", async () => {
    const { project, blocks } = await alice.project("stale-fail", [
      "n = 2",
      "half = 10 / n",
      "print(half)",
      "quarter = half / 2",
    ]);
    const [n, , show, quarter] = blocks as [Block, Block, Block, Block];
    await alice.runMany(ids(blocks));
    await alice.patch(n.id, { source: "n = 0" });
    const stopped = await alice.runStale(project.id);
    const summary = describeResults(stopped.results);
    expect(
      stopped.results.map((r) => r.status),
      summary,
    ).toEqual(["completed", "failed", "not_run", "not_run"]);
    expect(stopped.results[1]!.execution!.error!.name).toBe("ZeroDivisionError");
    expect(stopped.results[2]!.reason, summary).toEqual(expect.any(String));
    expect(Object.values(await alice.statuses(project.id))).toEqual([
      "COMPLETED",
      "FAILED",
      "STALE",
      "STALE",
    ]);

    const onwards = await alice.runStale(project.id, { continue_on_error: true });
    expect(
      onwards.results.map((r) => r.block_id),
      describeResults(onwards.results),
    ).toEqual([show.id, quarter.id]);
    // half still holds 5.0 in the kernel: both run.
    expect(onwards.results.map((r) => r.status)).toEqual(["completed", "completed"]);
  });
});

describe("history", () => {
  it("lists every run of a block newest first, each with its block_id and code", async () => {
    const { blocks } = await alice.project("history", ["counter = 0", "counter += 1\nprint(counter)"]);
    const [init, step] = blocks as [Block, Block];
    await alice.run(init.id);
    const runs = [];
    runs.push(await alice.run(step.id));
    runs.push(await alice.run(step.id));
    await alice.patch(step.id, { source: "counter += 10\nprint(counter)" });
    runs.push(await alice.run(step.id));
    expect(runs.map((r) => r.execution!.stdout)).toEqual(["1\n", "2\n", "12\n"]);

    const history = await alice.history(step.id);
    expect(history.map((e) => e.id)).toEqual(runs.map((r) => r.execution!.id).reverse());
    for (const execution of history) {
      expect(execution).toMatchObject({ block_id: step.id, status: "completed" });
    }
    expect(history.map((e) => e.code)).toEqual([
      "counter += 10\nprint(counter)",
      "counter += 1\nprint(counter)",
      "counter += 1\nprint(counter)",
    ]);
    const created = history.map((e) => Date.parse(e.created_at));
    expect([...created].sort((a, b) => b - a)).toEqual(created);
    expect((await alice.history(step.id, 1)).map((e) => e.id)).toEqual([runs[2]!.execution!.id]);
    expect(await alice.history(init.id)).toHaveLength(1);

    // Each run is an Execution readable by id; deleting the block keeps them.
    const byId = await alice.get(`/executions/${runs[0]!.execution!.id}`);
    expect(byId).toMatchObject({ block_id: step.id, stdout: "1\n" });
    await expectStatus(204, server, "DELETE", `/api/v1/blocks/${step.id}`, { token: alice.token });
    expect((await alice.request("GET", `/blocks/${step.id}/executions`)).status).toBe(404);
    expect(await alice.get(`/executions/${runs[2]!.execution!.id}`)).toMatchObject({ stdout: "12\n" });
    // So does deleting the project.
    await alice.deleteProject(init.project_id);
    expect((await alice.request("GET", `/projects/${init.project_id}`)).status).toBe(404);
    expect(await alice.get(`/executions/${runs[1]!.execution!.id}`)).toMatchObject({ stdout: "2\n" });
  });
});

describe("ownership", () => {
  it("answers 404 to another user for every project and block route, and changes nothing", async () => {
    const { project, blocks } = await alice.project("private", ["secret = 1", "print(secret)"]);
    const [first, second] = blocks as [Block, Block];
    const ran = await alice.runMany(ids(blocks));
    const execution = ran.results[1]!.execution!;
    await alice.patch(first.id, { source: "secret = 2" });
    const before = await alice.blocks(project.id);
    const kernels = (await alice.get("/blocks/kernels")).kernels as Array<{
      kernel_id: string;
      project_id: string | null;
    }>;
    const kernel = kernels.find((k) => k.project_id === project.id);
    expect(kernel, JSON.stringify(kernels)).toBeDefined();
    const own = await bob.project("bob's", ["mine = 1"]);

    const attempts: Array<[string, string, unknown?]> = [
      ["GET", `/projects/${project.id}`],
      ["PATCH", `/projects/${project.id}`, { name: "taken" }],
      ["POST", `/projects/${project.id}/blocks`, { source: "x = 1" }],
      ["GET", `/projects/${project.id}/blocks`],
      ["POST", `/projects/${project.id}/run-stale`, {}],
      ["GET", `/projects/${project.id}/notebook`],
      ["GET", `/projects/${project.id}/context`],
      ["GET", `/projects/${project.id}/context?format=json`],
      ["GET", `/blocks/${first.id}`],
      ["PATCH", `/blocks/${first.id}`, { source: "secret = 3" }],
      ["PATCH", `/blocks/${second.id}`, { position: 0 }],
      ["POST", `/blocks/${second.id}/execute`, {}],
      ["GET", `/blocks/${second.id}/executions`],
      ["POST", "/blocks/execute-multiple", { block_ids: [first.id, second.id] }],
      ["POST", "/blocks/execute-multiple", { block_ids: [own.blocks[0]!.id, first.id] }],
      ["GET", `/executions/${execution.id}`],
      ["GET", `/executions/${execution.id}/events`],
      ["POST", `/blocks/kernels/${kernel!.kernel_id}/stop`],
      ["DELETE", `/blocks/${second.id}`],
      ["DELETE", `/projects/${project.id}`],
    ];
    for (const [method, path, body] of attempts) {
      const response = await bob.request(method, path, body);
      expect(response.status, `bob ${method} ${path}: ${response.text.slice(0, 300)}`).toBe(404);
      expect(response.json?.error?.code, `${method} ${path}`).toMatch(/NOT_FOUND$/);
      expect(response.text).not.toContain("secret");
    }
    // Like an unknown id, to the owner as well.
    const unknown = "00000000-0000-4000-8000-000000000000";
    for (const path of [
      `/projects/${unknown}/context`,
      `/projects/${unknown}/notebook`,
      `/blocks/${unknown}`,
    ]) {
      expect((await alice.request("GET", path)).status, path).toBe(404);
    }
    expect((await alice.request("POST", `/blocks/${unknown}/execute`, {})).status).toBe(404);

    const bobsProjects = (await bob.get("/projects")).projects as Array<{ id: string }>;
    expect(bobsProjects.map((p) => p.id)).toEqual([own.project.id]);
    const bobsKernels = (await bob.get("/blocks/kernels")).kernels as Array<{ kernel_id: string }>;
    expect(bobsKernels.map((k) => k.kernel_id)).not.toContain(kernel!.kernel_id);

    // Alice's project is as she left it, its kernel still running.
    expect(await alice.getProject(project.id)).toMatchObject({ name: "private", block_count: 2 });
    expect(await alice.blocks(project.id)).toEqual(before);
    expect(await alice.history(second.id)).toHaveLength(1);
    const still = (await alice.get("/blocks/kernels")).kernels as Array<{ kernel_id: string }>;
    expect(still.map((k) => k.kernel_id)).toContain(kernel!.kernel_id);
    expect((await alice.get("/projects")).projects.map((p: { id: string }) => p.id)).toContain(project.id);
  });
});

describe("kernel-state rebuild", () => {
  it("a block that kills the kernel fails as kernel_died; the next run rebuilds the upstream blocks", async () => {
    const { project, blocks } = await alice.project("death", [
      "base = 7",
      "def grow(n):\n    return base * n",
      "unrelated = 'not needed'",
      "import os; os._exit(1)",
      "print(grow(6))",
    ]);
    const [base, grow, unrelated, die, use] = blocks as [Block, Block, Block, Block, Block];
    const setup = await alice.runMany([base.id, grow.id, unrelated.id]);
    expect(
      setup.results.map((r) => r.status),
      describeResults(setup.results),
    ).toEqual(["completed", "completed", "completed"]);

    const died = await alice.run(die.id);
    expect(died.status, describeResults([died])).toBe("failed");
    expect(died.execution).toMatchObject({ status: "failed", block_id: die.id });
    expect(died.execution!.error!.category).toBe("kernel_died");
    expect(died.block.status).toBe("FAILED");
    expect(died.block.status_reason).toEqual(expect.any(String));

    // Right away, as a client would: the kernel's state is gone, so base and grow run first.
    // (Soft: the same must hold once the replacement kernel is up, checked below.)
    const right = await alice.run(use.id);
    const rightSummary = describeResults([right]);
    expect
      .soft(
        right.rebuilt.map((r) => r.block_id),
        `run at once after the death: ${rightSummary}`,
      )
      .toEqual([base.id, grow.id]);
    expect.soft(right.status, `run at once after the death: ${rightSummary}`).toBe("completed");
    expect.soft(right.execution?.stdout, `run at once after the death: ${rightSummary}`).toBe("42\n");

    // Again, this time once the session says its new kernel is up.
    const sessionId = (await alice.getProject(project.id)).session_id;
    expect(sessionId).toEqual(expect.any(String));
    const session = async () => alice.get(`/sessions/${sessionId}`);
    const restartsBefore = (await session()).restarts as number;
    const diedAgain = await alice.run(die.id);
    expect(diedAgain.execution!.error!.category).toBe("kernel_died");
    const back = await pollUntilAsync(async () => {
      const now = await session();
      return now.restarts > restartsBefore && now.status === "idle";
    }, 20_000);
    expect(back, "the session's kernel was replaced").toBe(true);
    const after = await alice.run(use.id);
    const summary = describeResults([after]);
    expect(
      after.rebuilt.map((r) => r.block_id),
      summary,
    ).toEqual([base.id, grow.id]);
    expect(
      after.rebuilt.every((r) => r.status === "completed"),
      summary,
    ).toBe(true);
    expect(after.status, summary).toBe("completed");
    expect(after.execution!.stdout, summary).toBe("42\n");
    // The rebuild runs are in the upstream blocks' history; the unrelated block never reran.
    const baseHistory = await alice.history(base.id);
    expect(baseHistory.map((e) => e.id)[0]).toBe(after.rebuilt[0]!.execution_id);
    expect(await alice.history(unrelated.id)).toHaveLength(1);
    expect(await alice.statuses(project.id)).toMatchObject({
      [base.id]: "COMPLETED",
      [grow.id]: "COMPLETED",
      [die.id]: "FAILED",
      [use.id]: "COMPLETED",
    });
  });

  it("a stopped project kernel is replaced on the next run, which rebuilds the state it needs", async () => {
    const { project, blocks } = await alice.project("stopped", [
      "import math\nr = 2",
      "print(round(math.pi * r ** 2, 1))",
    ]);
    const [define, use] = blocks as [Block, Block];
    const first = await alice.run(define.id);
    expect(first.status, describeResults([first])).toBe("completed");
    const session = (await alice.getProject(project.id)).session_id;
    expect(session).toEqual(expect.any(String));
    const kernels = (await alice.get("/blocks/kernels")).kernels as Array<{
      kernel_id: string;
      session_id: string;
      project_id: string | null;
    }>;
    const kernel = kernels.find((k) => k.project_id === project.id);
    expect(kernel, JSON.stringify(kernels)).toMatchObject({ session_id: session });

    const stopped = await expectStatus(
      200,
      server,
      "POST",
      `/api/v1/blocks/kernels/${kernel!.kernel_id}/stop`,
      {
        token: alice.token,
      },
    );
    expect(stopped).toMatchObject({ kernel_id: kernel!.kernel_id, session_id: session, stopped: true });
    expect((await alice.getProject(project.id)).session_id).toBeNull();

    const after = await alice.run(use.id);
    expect(
      after.rebuilt.map((r) => r.block_id),
      describeResults([after]),
    ).toEqual([define.id]);
    expect(after.status).toBe("completed");
    expect(after.execution!.stdout).toBe("12.6\n");
    const now = await alice.getProject(project.id);
    expect(now.session_id).toEqual(expect.any(String));
    expect(now.session_id).not.toBe(session);
    // The kernel has the state now: no second rebuild.
    expect((await alice.run(use.id)).rebuilt).toEqual([]);
  });
});

describe("plots", () => {
  it("keeps a matplotlib PNG as an artifact file and still returns it inline", async () => {
    const { project, blocks } = await alice.project("plot", [
      "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()",
    ]);
    const ran = await alice.run(blocks[0]!.id);
    expect(ran.status, describeResults([ran])).toBe("completed");
    const displays = ran.execution!.outputs.filter((o) => o.type === "display");
    expect(displays).toHaveLength(1);
    const png = (displays[0] as { data: Record<string, unknown> }).data["image/png"];
    expect(png).toBeTypeOf("string");
    expect(Buffer.from(png as string, "base64").subarray(0, 8)).toEqual(
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    );

    // Stored once, content-addressed, under DATA_DIR/artifacts.
    const dir = join(server.dataDir, "artifacts");
    expect(existsSync(dir)).toBe(true);
    const hash = createHash("sha256")
      .update(png as string)
      .digest("hex");
    expect(readdirSync(dir)).toContain(hash);
    expect(readFileSync(join(dir, hash), "utf8")).toBe(png);

    // Read back whole, by id and in the history.
    const stored = await alice.get(`/executions/${ran.execution!.id}`);
    const storedPng = stored.outputs.find((o: { type: string }) => o.type === "display")?.data["image/png"];
    expect(storedPng).toBe(png);
    const [latest] = await alice.history(blocks[0]!.id);
    expect(latest!.outputs.find((o) => o.type === "display")).toMatchObject({ data: { "image/png": png } });
    const { events } = await alice.get(`/executions/${ran.execution!.id}/events`);
    const shown = (
      events as Array<{ type: string; output?: { type: string; data: Record<string, unknown> } }>
    ).find((e) => e.type === "output" && e.output?.type === "display");
    expect(shown?.output?.data["image/png"]).toBe(png);

    // In the notebook export too, and summarised (not inlined) in the context.
    const { notebook } = await alice.exportNotebook(project.id);
    const output = notebook.cells[0].outputs.find(
      (o: { output_type: string }) => o.output_type === "display_data",
    );
    expect(output.data["image/png"].replace(/\n/g, "")).toBe((png as string).replace(/\n/g, ""));
    const context = await alice.context(project.id);
    expect(context.text).toContain("image/png");
    expect(context.text).not.toContain((png as string).slice(0, 200));
  });
});
