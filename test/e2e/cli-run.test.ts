import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pollUntil, processesMatching } from "../support/processes.js";
import { ensureBuilt, nbformatErrors, notebook, runCli } from "./cli-helpers.js";

// `runcell run` end to end: the built CLI, real ipykernel, real files.
let dir: string;
// Each test gets its own runtime dir so leftover kernels can be attributed to that test alone.
const runtimeEnv = (name: string) => ({ RUNCELL_RUNTIME_DIR: join(dir, `rt-${name}`) });

beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "runcell-cli-run-"));
  // Sandboxes run as unprivileged uids and must be able to pass through to the runtime dir.
  chmodSync(dir, 0o711);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, content: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

function read(path: string) {
  return JSON.parse(readFileSync(path, "utf8")) as {
    cells: Array<{
      cell_type: string;
      outputs?: Array<Record<string, unknown>>;
      execution_count?: number | null;
      metadata: Record<string, unknown>;
      source: unknown;
    }>;
    metadata: Record<string, unknown>;
  };
}

describe("runcell run", () => {
  it("executes code cells in order with every kind of output, and writes a valid nbformat 4 notebook", async () => {
    const input = write(
      "rich.ipynb",
      notebook([
        { type: "markdown", source: "# Title" },
        { source: "x = 20\nprint('hello')" },
        { source: "x * 2 + 2" },
        { source: "import sys\nsys.stderr.write('warn\\n')" },
        { source: "" },
        {
          source:
            "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
        },
        { source: "from IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))" },
        { type: "raw", source: "raw text" },
      ]),
    );
    const output = join(dir, "rich.out.ipynb");
    const result = await runCli(["run", input, "-o", output], { env: runtimeEnv("rich") });
    expect(result.stderr).toContain("ran 5 cells");
    expect(result.code).toBe(0);
    expect(nbformatErrors(output)).toBe("");
    const nb = read(output);
    const [md, hello, answer, warn, empty, plot, html, raw] = nb.cells;
    expect(md!.cell_type).toBe("markdown");
    expect(raw!.cell_type).toBe("raw");
    expect(hello!.outputs).toEqual([{ output_type: "stream", name: "stdout", text: "hello\n" }]);
    expect(hello!.execution_count).toBe(1);
    expect(answer!.outputs![0]).toMatchObject({
      output_type: "execute_result",
      execution_count: 2,
      data: { "text/plain": "42" },
    });
    expect(warn!.outputs!.some((o) => o.name === "stderr" && o.text === "warn\n")).toBe(true);
    expect(empty!.outputs).toEqual([]);
    expect(empty!.execution_count).toBeNull();
    const png = plot!.outputs!.find((o) => o.output_type === "display_data");
    const pngData = (png?.data as Record<string, string> | undefined)?.["image/png"] ?? "";
    expect(Buffer.from(pngData, "base64").subarray(0, 8)).toEqual(
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    );
    expect(html!.outputs![0]).toMatchObject({
      output_type: "display_data",
      data: { "text/html": "<b>bold</b>" },
    });
    const timing = hello!.metadata.execution as Record<string, string>;
    expect(Date.parse(timing["iopub.status.idle"]!)).toBeGreaterThanOrEqual(
      Date.parse(timing["iopub.status.busy"]!),
    );
    expect(hello!.metadata.runcell).toMatchObject({ status: "completed" });
    expect(nb.metadata.language_info).toMatchObject({ name: "python" });
  });

  it("stops at the first failing cell with exit 1; later cells keep no outputs and no count", async () => {
    const input = write(
      "fails.ipynb",
      notebook([{ source: "print('before')" }, { source: "1/0" }, { source: "print('after')" }]),
    );
    const output = join(dir, "fails.out.ipynb");
    const result = await runCli(["run", input, "-o", output], { env: runtimeEnv("fails") });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("cell 2 failed");
    expect(result.stderr).toContain("ZeroDivisionError");
    const nb = read(output);
    expect(nb.cells[0]!.outputs).toHaveLength(1);
    expect(nb.cells[1]!.outputs![0]).toMatchObject({ output_type: "error", ename: "ZeroDivisionError" });
    expect(nb.cells[1]!.metadata.runcell).toMatchObject({ status: "failed" });
    expect(nb.cells[2]!.outputs).toEqual([]);
    expect(nb.cells[2]!.execution_count).toBeNull();
    expect(nbformatErrors(output)).toBe("");
  });

  it("with --allow-errors runs every cell and exits 0", async () => {
    const input = write(
      "allow.ipynb",
      notebook([{ source: "undefined_name" }, { source: "print('after')" }]),
    );
    const output = join(dir, "allow.out.ipynb");
    const result = await runCli(["run", input, "-o", output, "--allow-errors"], { env: runtimeEnv("allow") });
    expect(result.code).toBe(0);
    const nb = read(output);
    expect(nb.cells[0]!.outputs![0]).toMatchObject({ output_type: "error", ename: "NameError" });
    expect(nb.cells[1]!.outputs).toEqual([{ output_type: "stream", name: "stdout", text: "after\n" }]);
  });

  it("writes the notebook in place without -o, replacing stale outputs", async () => {
    const nb = notebook([{ source: "print(6 * 7)" }]);
    (nb.cells[0] as { outputs: unknown[] }).outputs = [
      { output_type: "stream", name: "stdout", text: "stale\n" },
    ];
    const input = write("inplace.ipynb", nb);
    const result = await runCli(["run", input], { env: runtimeEnv("inplace") });
    expect(result.code).toBe(0);
    expect(read(input).cells[0]!.outputs).toEqual([{ output_type: "stream", name: "stdout", text: "42\n" }]);
  });

  it("--timeout ends a runaway cell as timed_out with an error output saying so", async () => {
    const input = write(
      "slow.ipynb",
      notebook([{ source: "while True: pass" }, { source: "print('never')" }]),
    );
    const output = join(dir, "slow.out.ipynb");
    const result = await runCli(["run", input, "-o", output, "--timeout", "1"], { env: runtimeEnv("slow") });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("timed_out");
    const nb = read(output);
    expect(nb.cells[0]!.outputs!.some((o) => o.ename === "TimeoutError")).toBe(true);
    expect(nb.cells[1]!.execution_count).toBeNull();
  });

  it("runs a notebook whose directory the sandbox may not enter, in an empty workspace, saying so", async () => {
    const { mkdirSync } = await import("node:fs");
    const closed = join(dir, "closed");
    mkdirSync(closed, { mode: 0o700 });
    const input = join(closed, "private.ipynb");
    writeFileSync(
      input,
      JSON.stringify(notebook([{ source: "import os\nprint(os.getcwd(), os.listdir('.'))" }])),
    );
    const output = join(dir, "private.out.ipynb");
    const result = await runCli(["run", input, "-o", output], { env: runtimeEnv("closed") });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(`chmod o+rx ${closed}`);
    expect(read(output).cells[0]!.outputs).toEqual([
      { output_type: "stream", name: "stdout", text: "/workspace []\n" },
    ]);
  });

  it("answers bad input with exit 2 and a message that says what to do", async () => {
    const missing = await runCli(["run", join(dir, "nope.ipynb")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no such notebook");

    const badJson = await runCli(["run", write("bad.ipynb", "{not json")]);
    expect(badJson.code).toBe(2);
    expect(badJson.stderr).toContain("not valid JSON");

    const badShape = await runCli([
      "run",
      write("shape.ipynb", { nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ cell_type: "code" }] }),
    ]);
    expect(badShape.code).toBe(2);
    expect(badShape.stderr).toMatch(/cells\.0\.source/);

    const oldFormat = await runCli([
      "run",
      write("v3.ipynb", { nbformat: 3, nbformat_minor: 0, metadata: {}, worksheets: [] }),
    ]);
    expect(oldFormat.code).toBe(2);
    expect(oldFormat.stderr).toContain("nbformat 4");

    const unknownKernel = await runCli([
      "run",
      write("k.ipynb", notebook([{ source: "1" }], "no-such-kernel")),
    ]);
    expect(unknownKernel.code).toBe(2);
    expect(unknownKernel.stderr).toContain('no kernel named "no-such-kernel"');
    expect(unknownKernel.stderr).toContain("python3");

    const badTimeout = await runCli([
      "run",
      write("t.ipynb", notebook([{ source: "1" }])),
      "--timeout",
      "-3",
    ]);
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.stderr).toContain("--timeout");

    const unknownFlag = await runCli(["run", "--frobnicate"]);
    expect(unknownFlag.code).toBe(2);
  });

  it("leaves no kernel behind when the CLI is killed with SIGKILL mid-run", async () => {
    const runtimeDir = join(dir, "rt-killed");
    const input = write(
      "sleepy.ipynb",
      notebook([{ source: "print('started', flush=True)\nimport time\ntime.sleep(600)" }]),
    );
    const { spawn } = await import("node:child_process");
    const { CLI } = await import("./cli-helpers.js");
    const child = spawn(process.execPath, [CLI, "run", input], {
      env: { ...process.env, RUNCELL_RUNTIME_DIR: runtimeDir },
      stdio: "ignore",
    });
    // The kernel's command line names its connection file, which lives in this test's runtime dir.
    expect(await pollUntil(() => processesMatching(runtimeDir).length > 0, 30_000)).toBe(true);
    child.kill("SIGKILL");
    expect(await pollUntil(() => processesMatching(runtimeDir).length === 0, 15_000)).toBe(true);
  });
});

describe("runcell kernels", () => {
  it("lists the installed kernelspecs with name, language and display name", async () => {
    const result = await runCli(["kernels"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^NAME\s+LANGUAGE\s+DISPLAY NAME/);
    expect(result.stdout).toMatch(/python3\s+python\s+Python 3/);
    const json = await runCli(["kernels", "--json"]);
    expect(JSON.parse(json.stdout)).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: "python3", language: "python" })]),
    );
  });

  it("finds kernelspecs on JUPYTER_PATH first and reports invalid ones without failing", async () => {
    const base = join(dir, "jp");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(join(base, "kernels/custom"), { recursive: true });
    mkdirSync(join(base, "kernels/broken"), { recursive: true });
    writeFileSync(
      join(base, "kernels/custom/kernel.json"),
      JSON.stringify({ argv: ["x"], display_name: "Custom", language: "lisp" }),
    );
    writeFileSync(join(base, "kernels/broken/kernel.json"), "{");
    const result = await runCli(["kernels"], { env: { JUPYTER_PATH: base } });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/custom\s+lisp\s+Custom/);
    expect(result.stderr).toContain("broken/kernel.json");
  });

  it("rejects unknown commands with exit 2", async () => {
    const result = await runCli(["frobnicate"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("unknown command");
  });
});
