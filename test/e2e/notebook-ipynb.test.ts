/**
 * AI notebooks as .ipynb and as LLM context, over HTTP with real kernels: export validated by
 * Debian's nbformat (outputs, execution counts, runcell status and timing), import of a
 * real-world-like notebook, round trips, bad import bodies, and the context renderings.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Block,
  describeResults,
  joinLines,
  nbformatErrors,
  NotebookClient,
  type NotebookJson,
  normalizeOutput,
} from "./notebook-helpers.js";
import { request, type Server, startServer } from "./server-helpers.js";

const FIXTURE = join(import.meta.dirname, "fixtures/notebook-real-world.ipynb");

let server: Server;
let alice: NotebookClient;

beforeAll(async () => {
  server = await startServer({ poolSize: 0, users: ["alice"] });
  alice = new NotebookClient(server, server.tokens.alice!);
});
afterEach(async () => {
  await alice?.cleanup();
});
afterAll(async () => {
  await server?.stop();
});

const fixture = (): NotebookJson => JSON.parse(readFileSync(FIXTURE, "utf8")) as NotebookJson;

/** Every cell's type, joined source, normalised outputs and execution count. */
function essentials(notebook: NotebookJson) {
  return (notebook.cells as NotebookJson[]).map((cell) => ({
    cell_type: cell.cell_type,
    source: joinLines(cell.source),
    ...(cell.cell_type === "code"
      ? {
          outputs: (cell.outputs as NotebookJson[]).map(normalizeOutput),
          execution_count: cell.execution_count,
        }
      : {}),
    ...(cell.attachments ? { attachments: cell.attachments } : {}),
  }));
}

/** The cell's metadata without what runcell adds on export. */
function ownMetadata(cell: NotebookJson): Record<string, unknown> {
  const { runcell: _runcell, execution: _execution, ...rest } = cell.metadata as Record<string, unknown>;
  return rest;
}

describe("export", () => {
  it("is a valid nbformat 4.5 notebook with outputs, execution counts and runcell status and timing", async () => {
    const { project, blocks } = await alice.project("export me", [
      { source: "# Title\n\nSome *text*.", cell_type: "markdown", metadata: { tags: ["intro"] } },
      { source: "raw passthrough", cell_type: "raw" },
      "greeting = 'hello'\nprint(greeting)",
      "len(greeting) * 7",
      "raise KeyError('missing')",
      "never = 'run'",
    ]);
    const [markdown, raw, hello, result, failing, idle] = blocks as [
      Block,
      Block,
      Block,
      Block,
      Block,
      Block,
    ];
    const ran = await alice.runMany([hello.id, result.id, failing.id], { continue_on_error: true });
    expect(
      ran.results.map((r) => r.status),
      describeResults(ran.results),
    ).toEqual(["completed", "completed", "failed"]);

    const { response, notebook } = await alice.exportNotebook(project.id);
    expect(response.headers["content-type"]).toContain("application/x-ipynb+json");
    expect(response.headers["content-disposition"]).toContain('filename="export_me.ipynb"');
    expect(nbformatErrors(response.text)).toBe("");
    expect(notebook).toMatchObject({
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: "python3" }, language_info: { name: "python" } },
    });
    const cells = notebook.cells as NotebookJson[];
    expect(cells.map((c) => c.cell_type)).toEqual(["markdown", "raw", "code", "code", "code", "code"]);
    expect(new Set(cells.map((c) => c.id)).size).toBe(6);
    expect(cells[0]).toMatchObject({ source: markdown.source, metadata: { tags: ["intro"] } });
    expect(cells[1]!.source).toBe(raw.source);

    const [, , c1, c2, c3, c4] = cells as [
      NotebookJson,
      NotebookJson,
      NotebookJson,
      NotebookJson,
      NotebookJson,
      NotebookJson,
    ];
    expect(c1.outputs.map(normalizeOutput)).toEqual([
      { output_type: "stream", name: "stdout", text: "hello\n" },
    ]);
    expect(c1.execution_count).toBe(ran.results[0]!.execution!.execution_count);
    expect(c2.outputs).toHaveLength(1);
    expect(c2.outputs[0]).toMatchObject({
      output_type: "execute_result",
      execution_count: c2.execution_count,
      data: { "text/plain": "35" },
    });
    expect(c2.execution_count).toBeGreaterThan(c1.execution_count);
    expect(c3.outputs).toEqual([
      expect.objectContaining({ output_type: "error", ename: "KeyError", evalue: "'missing'" }),
    ]);
    expect(c4).toMatchObject({ execution_count: null, outputs: [] });

    // Per cell: the block, its status, and the timing of its last run (runcell's and nbclient's keys).
    for (const [cell, block, status] of [
      [c1, hello, "COMPLETED"],
      [c2, result, "COMPLETED"],
      [c3, failing, "FAILED"],
    ] as const) {
      const execution = ran.results.find((r) => r.block_id === block.id)!.execution!;
      expect(cell.metadata.runcell, block.source).toMatchObject({
        block_id: block.id,
        started_at: execution.started_at,
        finished_at: execution.finished_at,
        duration_ms: execution.duration_ms,
      });
      // The block's status (soft: the other checks still run when it is wrong).
      expect.soft(cell.metadata.runcell.status, `runcell.status of ${block.source}`).toBe(status);
      expect(cell.metadata.execution).toMatchObject({
        "iopub.status.busy": execution.started_at,
        "iopub.status.idle": execution.finished_at,
      });
    }
    expect(c4.metadata.runcell).toMatchObject({ block_id: idle.id, status: "IDLE" });

    // An edit: the cell shows its new source, keeps its last outputs, and says STALE.
    await alice.patch(hello.id, { source: "greeting = 'bonjour'\nprint(greeting)" });
    const stale = await alice.exportNotebook(project.id);
    expect(nbformatErrors(stale.response.text)).toBe("");
    const staleCell = stale.notebook.cells[2] as NotebookJson;
    expect(staleCell.source).toBe("greeting = 'bonjour'\nprint(greeting)");
    expect(staleCell.outputs.map(normalizeOutput)).toEqual(c1.outputs.map(normalizeOutput));
    expect(staleCell.metadata.runcell.block_id).toBe(hello.id);
    expect.soft(staleCell.metadata.runcell.status, "runcell.status of the edited cell").toBe("STALE");
    expect
      .soft(
        (stale.notebook.cells[3] as NotebookJson).metadata.runcell.status,
        "runcell.status of its dependent",
      )
      .toBe("STALE");
  });

  it("export → import → export keeps sources, outputs and execution counts", async () => {
    const { project, blocks } = await alice.project("round trip", [
      { source: "Intro", cell_type: "markdown" },
      "values = [3, 1, 2]\nprint(sorted(values))",
      "{'n': len(values)}",
      "values.missing()",
      "",
    ]);
    const ran = await alice.runMany(
      blocks.filter((b) => b.cell_type === "code").map((b) => b.id),
      { continue_on_error: true },
    );
    expect(
      ran.results.map((r) => r.status),
      describeResults(ran.results),
    ).toEqual(["completed", "completed", "failed", "completed"]);
    const first = await alice.exportNotebook(project.id);
    const copy = await alice.importNotebook(first.response.text, "copy");
    expect(copy).toMatchObject({ name: "copy", block_count: 5, kernel: "python3" });
    const second = await alice.exportNotebook(copy.id);
    expect(nbformatErrors(second.response.text)).toBe("");
    expect(essentials(second.notebook)).toEqual(essentials(first.notebook));
    // The copy's blocks have not run here.
    expect(Object.values(await alice.statuses(copy.id))).toEqual(["IDLE", "IDLE", "IDLE", "IDLE", "IDLE"]);
  });
});

describe("import", () => {
  it("imports a real-world notebook: markdown with attachments, raw, code with every kind of output", async () => {
    const original = fixture();
    const project = await alice.importNotebook(original, "sales");
    expect(project).toMatchObject({ name: "sales", kernel: "python3", block_count: 8 });
    expect(project.metadata).toMatchObject({ authors: [{ name: "Ada Lovelace" }] });

    const blocks = await alice.blocks(project.id);
    expect(blocks.map((b) => b.cell_type)).toEqual([
      "markdown",
      "raw",
      "code",
      "code",
      "code",
      "code",
      "code",
      "markdown",
    ]);
    expect(blocks.map((b) => b.source)).toEqual(
      (original.cells as NotebookJson[]).map((c) => joinLines(c.source)),
    );
    expect(blocks.map((b) => b.position)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(blocks.every((b) => b.status === "IDLE")).toBe(true);
    expect(blocks.map((b) => b.execution_count)).toEqual([null, null, 1, 2, 3, 4, null, null]);
    const [intro, , load, mean, plot, broken] = blocks as [Block, Block, Block, Block, Block, Block];
    expect(intro.metadata).toEqual({ tags: ["header"] });
    expect(load.metadata).toEqual({ tags: ["parameters"], collapsed: false, scrolled: true });
    expect(load.defines).toEqual(expect.arrayContaining(["statistics", "sales"]));
    expect(mean.uses).toEqual(expect.arrayContaining(["statistics", "sales"]));
    expect(plot.defines).toContain("plt");
    expect(plot.uses).toContain("sales");
    expect(plot.analysis_error).toBeNull();

    // Exported at once: the same sources, outputs, attachments and metadata.
    const exported = await alice.exportNotebook(project.id);
    expect(nbformatErrors(exported.response.text)).toBe("");
    expect(essentials(exported.notebook)).toEqual(essentials(original));
    const cells = exported.notebook.cells as NotebookJson[];
    for (const [i, cell] of (original.cells as NotebookJson[]).entries()) {
      expect(ownMetadata(cells[i]!), `cell ${i}`).toEqual(cell.metadata);
    }
    expect(cells[0]!.attachments).toEqual(original.cells[0].attachments);
    expect(exported.notebook.metadata).toMatchObject({
      authors: [{ name: "Ada Lovelace" }],
      toc: original.metadata.toc,
      kernelspec: { name: "python3" },
    });

    // The context shows the imported outputs until the blocks run here.
    const context = await alice.context(project.id);
    expect(context.status).toBe(200);
    expect(context.text).toContain("total=58");
    expect(context.text).toContain("ZeroDivisionError: division by zero");
    expect(context.text).toContain("image/png");

    // Running the code blocks replaces the imported outputs with this kernel's.
    const code = blocks.filter((b) => b.cell_type === "code").map((b) => b.id);
    const ran = await alice.runMany(code, { continue_on_error: true });
    const summary = describeResults(ran.results);
    expect(
      ran.results.map((r) => r.status),
      summary,
    ).toEqual(["completed", "completed", "completed", "failed", "completed"]);
    expect(ran.results[3]!.execution!.error).toMatchObject({ name: "ZeroDivisionError" });
    expect((await alice.block(broken.id)).status).toBe("FAILED");
    const rerun = await alice.exportNotebook(project.id);
    expect(nbformatErrors(rerun.response.text)).toBe("");
    const [, , l, m, p, b, e] = rerun.notebook.cells as NotebookJson[];
    expect(l!.outputs.map(normalizeOutput)).toEqual([
      { output_type: "stream", name: "stdout", text: "total=58\n" },
    ]);
    expect(l!.execution_count).toBe(ran.results[0]!.execution!.execution_count);
    expect(l!.metadata.runcell).toMatchObject({ block_id: load.id });
    expect.soft(l!.metadata.runcell.status, "runcell.status of a completed block").toBe("COMPLETED");
    expect(m!.outputs[0]).toMatchObject({ output_type: "execute_result", data: { "text/plain": "14.5" } });
    const png = p!.outputs.find((o: NotebookJson) => o.output_type === "display_data");
    expect(png?.data["image/png"]).toEqual(expect.any(String));
    expect(png.data["image/png"]).not.toBe(original.cells[4].outputs[0].data["image/png"]);
    expect(b!.outputs[0]).toMatchObject({ output_type: "error", ename: "ZeroDivisionError" });
    expect(e).toMatchObject({ outputs: [] });
    expect(e!.execution_count).toEqual(expect.any(Number));
  });

  it("takes notebooks without cell ids (nbformat 4.4) and names a project from metadata.title", async () => {
    const original = fixture();
    original.nbformat_minor = 4;
    original.metadata.title = "Titled notebook";
    for (const cell of original.cells as NotebookJson[]) delete cell.id;
    const project = await alice.importNotebook(original);
    expect(project.name).toBe("Titled notebook");
    const exported = await alice.exportNotebook(project.id);
    expect(nbformatErrors(exported.response.text)).toBe("");
    expect(essentials(exported.notebook)).toEqual(essentials(original));
  });

  it("answers 400 to bodies that are not nbformat 4 notebooks, and creates nothing", async () => {
    const valid = fixture();
    const withCell = (cell: unknown) => JSON.stringify({ ...valid, cells: [cell] });
    const bodies: Array<[string, string]> = [
      ["not JSON", '{"nbformat": 4, "cells": ['],
      ["empty body", ""],
      ["null", "null"],
      ["an array", "[]"],
      ["a string", '"notebook"'],
      ["an empty object", "{}"],
      ["nbformat 3", JSON.stringify({ nbformat: 3, nbformat_minor: 0, metadata: {}, worksheets: [] })],
      ["nbformat 5", JSON.stringify({ ...valid, nbformat: 5 })],
      ["no cells", JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {} })],
      ["cells an object", JSON.stringify({ ...valid, cells: {} })],
      ["no metadata", JSON.stringify({ nbformat: 4, nbformat_minor: 5, cells: [] })],
      ["unknown cell type", withCell({ cell_type: "widget", metadata: {}, source: "" })],
      ["cell without source", withCell({ cell_type: "code", metadata: {}, outputs: [] })],
      ["numeric source", withCell({ cell_type: "code", metadata: {}, source: 42, outputs: [] })],
      [
        "outputs not a list",
        withCell({ cell_type: "code", metadata: {}, source: "1", outputs: "none", execution_count: null }),
      ],
      [
        "output without output_type",
        withCell({ cell_type: "code", metadata: {}, source: "1", outputs: [{}], execution_count: null }),
      ],
      ["a cell that is a string", withCell("print(1)")],
      [
        "an unknown kernel",
        JSON.stringify({
          ...valid,
          metadata: { kernelspec: { name: "no-such-kernel-xyz", display_name: "x" } },
        }),
      ],
    ];
    const before = (await alice.get("/projects")).projects.length;
    for (const [what, raw] of bodies) {
      const response = await request(server, "POST", "/api/v1/projects/import", { token: alice.token, raw });
      expect(response.status, `${what}: ${response.text.slice(0, 300)}`).toBe(400);
      expect(response.json?.error?.code, what).toEqual(expect.any(String));
      expect(response.json?.error?.message, what).toEqual(expect.any(String));
    }
    const emptyName = await request(server, "POST", "/api/v1/projects/import?name=", {
      token: alice.token,
      raw: JSON.stringify(valid),
    });
    expect(emptyName.status, emptyName.text).toBe(400);
    expect((await alice.get("/projects")).projects.length).toBe(before);
  });
});

describe("context", () => {
  it("renders code, statuses, outputs (long ones elided), errors and timing, within max_chars", async () => {
    const { project, blocks } = await alice.project("for the model", [
      "import math\nradius = 2",
      "area = math.pi * radius ** 2\nprint(f'area={area:.3f}')",
      "print('HEAD' + 'x' * 12000 + 'TAIL')",
      "def explode():\n    raise RuntimeError('context boom')\n\nexplode()",
      { source: "## Notes for the model", cell_type: "markdown" },
      "never_ran = radius * 3",
    ]);
    const ran = await alice.runMany(
      blocks.slice(0, 4).map((b) => b.id),
      { continue_on_error: true },
    );
    expect(
      ran.results.map((r) => r.status),
      describeResults(ran.results),
    ).toEqual(["completed", "completed", "completed", "failed"]);

    const markdown = await alice.context(project.id);
    expect(markdown.status, markdown.text).toBe(200);
    expect(markdown.headers["content-type"]).toContain("text/markdown");
    const text = markdown.text;
    expect(text.length).toBeLessThanOrEqual(20_000);
    expect(text).toContain("for the model");
    for (const block of blocks.slice(0, 4)) expect(text).toContain(block.source.split("\n")[0]);
    expect(text).toContain("## Notes for the model");
    expect(text).toContain("never_ran = radius * 3");
    expect(text).toContain("COMPLETED");
    expect(text).toContain("FAILED");
    expect(text).toContain("IDLE");
    expect(text).toContain("area=12.566");
    // The long output keeps its head and tail, with the marker in between.
    expect(text).toContain("HEAD");
    expect(text).toContain("TAIL");
    expect(text).toMatch(/characters elided/);
    expect(text).not.toContain("x".repeat(6000));
    // The error and the traceback lines that matter, without colour codes.
    expect(text).toContain("RuntimeError: context boom");
    expect(text).toContain("raise RuntimeError('context boom')");
    expect(text).toContain("explode()");
    expect(text).not.toContain("\u001b[");
    // Durations of the blocks that ran.
    expect(text).toMatch(/\d+ ms/);

    for (const max of [200, 600, 1500, 5000]) {
      const small = await alice.context(project.id, `max_chars=${max}`);
      expect(small.status, small.text).toBe(200);
      expect(small.text.length, `max_chars=${max}`).toBeLessThanOrEqual(max);
      expect(small.text.length, `max_chars=${max}`).toBeGreaterThan(0);
    }
    const medium = (await alice.context(project.id, "max_chars=5000")).text;
    expect(medium).toContain("for the model");
    expect(medium).toContain("RuntimeError");

    const json = await alice.context(project.id, "format=json");
    expect(json.status, json.text).toBe(200);
    const data = JSON.parse(json.text) as NotebookJson;
    expect(data.project).toMatchObject({ id: project.id, name: "for the model" });
    expect(data.truncated).toBe(true);
    expect(data.blocks.map((b: NotebookJson) => b.status)).toEqual([
      "COMPLETED",
      "COMPLETED",
      "COMPLETED",
      "FAILED",
      "IDLE",
      "IDLE",
    ]);
    expect(data.blocks.map((b: NotebookJson) => b.id)).toEqual(blocks.map((b) => b.id));
    expect(data.blocks[1].output).toContain("area=12.566");
    expect(data.blocks[2].output).toMatch(/characters elided/);
    expect(data.blocks[3].error).toMatchObject({ name: "RuntimeError", value: "context boom" });
    expect(data.blocks[3].error.traceback.join("\n")).toContain("raise RuntimeError");
    expect(data.blocks[0].duration_ms).toEqual(expect.any(Number));
    expect(data.blocks[5].duration_ms).toBeNull();
    const boundedJson = await alice.context(project.id, "format=json&max_chars=3000");
    expect(boundedJson.text.length).toBeLessThanOrEqual(3000);
    expect(() => JSON.parse(boundedJson.text)).not.toThrow();

    // STALE with its reason after an edit.
    await alice.patch(blocks[0]!.id, { source: "import math\nradius = 3" });
    const stale = (await alice.context(project.id)).text;
    expect(stale).toContain("STALE");
    expect(stale).toContain("radius = 3");

    for (const query of ["max_chars=10", "max_chars=abc", "format=xml"]) {
      expect((await alice.context(project.id, query)).status, query).toBe(400);
    }
  });
});
