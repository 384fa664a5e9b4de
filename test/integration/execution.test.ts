/**
 * Executions on one real ipykernel whose state stays healthy throughout: results, streams,
 * rich outputs, errors, stdin and concurrent submissions.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DisplayOutput, ExecutionError, Kernel, Output } from "../../src/index.js";
import { KernelExecutor } from "../../src/index.js";
import {
  ANSI_ESCAPE,
  createManager,
  describeExecution,
  expectFinished,
  resultText,
  type TestEnv,
} from "./helpers.js";

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let kernel: Kernel;
let executor: KernelExecutor;
let env: TestEnv | undefined;

beforeAll(async () => {
  env = createManager();
  kernel = await env.manager.start({ name: "python3" });
  executor = new KernelExecutor(kernel);
});

afterAll(async () => {
  await executor?.dispose();
  await env?.cleanup();
});

function displays(outputs: Output[]): DisplayOutput[] {
  return outputs.filter((output): output is DisplayOutput => output.type === "display");
}

describe("state and results", () => {
  it("keeps variables across executions and counts them", async () => {
    const first = await executor.execute("x = 41");
    expectFinished(first, "completed", "x = 41");
    expect(first.outputs).toEqual([]);
    expect(first.stdout).toBe("");
    expect(first.execution_count).toBeTypeOf("number");
    expect(first.started_at).not.toBeNull();
    expect(first.session_id).toBeNull();
    expect(first.block_id).toBeNull();

    const results: Output[] = [];
    const second = await executor.execute("x + 1", {
      sessionId: "s-1",
      blockId: "b-1",
      onResult: (output) => results.push(output),
    });
    expectFinished(second, "completed", "x + 1");
    expect(resultText(second)).toBe("42");
    expect(second.execution_count).toBe(first.execution_count! + 1);
    expect(second.outputs).toEqual([
      { type: "result", execution_count: second.execution_count, data: { "text/plain": "42" }, metadata: {} },
    ]);
    expect(results).toEqual(second.outputs);
    expect(second.session_id).toBe("s-1");
    expect(second.block_id).toBe("b-1");
    expect(second.stdout).toBe("");
    expect(second.stderr).toBe("");
  });
});

describe("streams", () => {
  it("separates stdout from stderr, keeps their order and calls the stream callbacks", async () => {
    const code = [
      "import sys",
      "print('out 1', flush=True)",
      "sys.stderr.write('err 1\\n')",
      "sys.stderr.flush()",
      "print('out 2', flush=True)",
    ].join("\n");
    const seenOut: string[] = [];
    const seenErr: string[] = [];
    const execution = await executor.execute(code, {
      onStdout: (text) => seenOut.push(text),
      onStderr: (text) => seenErr.push(text),
    });
    expectFinished(execution, "completed", code);
    expect(execution.stdout).toBe("out 1\nout 2\n");
    expect(execution.stderr).toBe("err 1\n");
    expect(execution.stdout_bytes).toBe(12);
    expect(execution.stderr_bytes).toBe(6);
    expect(execution.outputs).toEqual([
      { type: "stream", name: "stdout", text: "out 1\n" },
      { type: "stream", name: "stderr", text: "err 1\n" },
      { type: "stream", name: "stdout", text: "out 2\n" },
    ]);
    expect(seenOut.join("")).toBe("out 1\nout 2\n");
    expect(seenErr.join("")).toBe("err 1\n");
  });
});

describe("rich outputs", () => {
  it("turns a matplotlib figure into a display with a valid PNG and a text/plain", async () => {
    const code = [
      "import matplotlib.pyplot as plt",
      "fig, ax = plt.subplots(figsize=(2, 2))",
      "ax.plot([1, 2, 3], [1, 4, 9])",
      "plt.show()",
    ].join("\n");
    const seen: DisplayOutput[] = [];
    const execution = await executor.execute(code, { onDisplay: (output) => seen.push(output) });
    expectFinished(execution, "completed", code);
    const [figure, ...others] = displays(execution.outputs);
    expect(others).toEqual([]);
    expect(figure).toBeDefined();
    const png = figure!.data["image/png"];
    expect(png).toBeTypeOf("string");
    const bytes = Buffer.from(png as string, "base64");
    expect(bytes.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    expect(bytes.subarray(12, 16).toString("latin1")).toBe("IHDR");
    expect(figure!.data["text/plain"]).toMatch(/Figure/);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.data["image/png"]).toBe(png);
  });

  it("passes IPython.display.HTML through as text/html", async () => {
    const code = "from IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))";
    const execution = await executor.execute(code);
    expectFinished(execution, "completed", code);
    const [html, ...others] = displays(execution.outputs);
    expect(others).toEqual([]);
    expect(html!.data["text/html"]).toBe("<b>bold</b>");
    expect(html!.data["text/plain"]).toBeTypeOf("string");
    expect(html!.display_id).toBeUndefined();
  });

  it("applies update_display_data to the display with the same display_id", async () => {
    const code = [
      "from IPython.display import display",
      "handle = display('first version', display_id=True)",
      "handle.update('second version')",
      "print(handle.display_id)",
    ].join("\n");
    const events: string[] = [];
    const execution = await executor.execute(code, { onEvent: (event) => events.push(event.type) });
    expectFinished(execution, "completed", code);
    const [shown, ...others] = displays(execution.outputs);
    expect(others).toEqual([]);
    expect(shown!.data["text/plain"]).toBe("'second version'");
    expect(shown!.display_id).toBe(execution.stdout.trim());
    expect(events).toContain("update_display");
  });

  it("honours clear_output, immediate and with wait=True", async () => {
    const code = [
      "from IPython.display import clear_output",
      "print('gone', flush=True)",
      "clear_output()",
      "print('kept 1', flush=True)",
      "clear_output(wait=True)",
      "print('kept 2', flush=True)",
    ].join("\n");
    const execution = await executor.execute(code);
    expectFinished(execution, "completed", code);
    expect(execution.outputs).toEqual([{ type: "stream", name: "stdout", text: "kept 2\n" }]);
    // The stream log is a log: clearing the display does not rewrite what was printed.
    expect(execution.stdout).toBe("gone\nkept 1\nkept 2\n");
  });
});

describe("errors", () => {
  it("reports a NameError as failed/runtime with an ANSI-free traceback", async () => {
    const code = "undefined_name_xyz + 1";
    const errors: ExecutionError[] = [];
    const execution = await executor.execute(code, { onError: (error) => errors.push(error) });
    expectFinished(execution, "failed", code);
    const error = execution.error!;
    expect(error.name).toBe("NameError");
    expect(error.category).toBe("runtime");
    expect(error.value).toContain("undefined_name_xyz");
    expect(error.traceback.length).toBeGreaterThan(0);
    for (const line of error.traceback) expect(line).not.toMatch(ANSI_ESCAPE);
    expect(error.traceback.join("\n")).toContain("NameError");
    expect(errors).toEqual([error]);
    // The output keeps the kernel's own (coloured) traceback for notebook rendering.
    const output = execution.outputs.find((item) => item.type === "error");
    expect(output).toMatchObject({ type: "error", name: "NameError" });
    expect(execution.limit).toBeNull();
  });

  it("reports a SyntaxError with category syntax", async () => {
    const code = "def broken(:\n    pass";
    const execution = await executor.execute(code);
    expectFinished(execution, "failed", code);
    expect(execution.error!.name).toBe("SyntaxError");
    expect(execution.error!.category).toBe("syntax");
    for (const line of execution.error!.traceback) expect(line).not.toMatch(ANSI_ESCAPE);
  });

  it("reports the import of a missing module with category import", async () => {
    const code = "import runcell_no_such_module_xyz";
    const execution = await executor.execute(code);
    expectFinished(execution, "failed", code);
    expect(execution.error!.name).toBe("ModuleNotFoundError");
    expect(execution.error!.category).toBe("import");
    expect(execution.error!.value).toContain("runcell_no_such_module_xyz");
  });

  it("keeps the kernel usable after errors", async () => {
    const execution = await executor.execute("x * 2");
    expectFinished(execution, "completed");
    expect(resultText(execution)).toBe("82");
  });
});

describe("stdin", () => {
  it("fails input() without a stdin source with a clear StdinNotImplementedError", async () => {
    const code = "answer = input('name? ')";
    const execution = await executor.execute(code);
    expectFinished(execution, "failed", code);
    expect(execution.error!.name).toBe("StdinNotImplementedError");
    expect(execution.error!.category).toBe("runtime");
    expect(execution.error!.value).toMatch(/does not support input requests/);
  });

  it("answers input() from a fixed text, line by line", async () => {
    const code = "a = input('first? ')\nb = input('second? ')\nprint(f'{a}+{b}')";
    const execution = await executor.execute(code, { stdin: "alice\nbob" });
    expectFinished(execution, "completed", code);
    expect(execution.stdout).toBe("alice+bob\n");
  });

  it("answers input() from a function that sees the prompt", async () => {
    const prompts: Array<[string, boolean]> = [];
    const code = "print('hello ' + input('name? '))";
    const execution = await executor.execute(code, {
      stdin: async (prompt, password) => {
        prompts.push([prompt, password]);
        return "carol";
      },
    });
    expectFinished(execution, "completed", code);
    expect(execution.stdout).toBe("hello carol\n");
    expect(prompts).toEqual([["name? ", false]]);
  });
});

describe("concurrency", () => {
  it("runs 20 concurrent executions one at a time with no mixing of outputs", async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `job-${i}-${Math.random().toString(36).slice(2, 8)}`);
    const executions = await Promise.all(
      ids.map((id) =>
        executor.execute(
          `import time, random\ntime.sleep(random.random() / 20)\nprint(${JSON.stringify(id)})`,
        ),
      ),
    );
    executions.forEach((execution, i) => {
      expect(execution.status, describeExecution(execution)).toBe("completed");
      expect(execution.stdout).toBe(`${ids[i]}\n`);
      expect(execution.stderr).toBe("");
      expect(execution.outputs).toEqual([{ type: "stream", name: "stdout", text: `${ids[i]}\n` }]);
    });
    // FIFO: each got the next execution count, in submission order.
    const counts = executions.map((execution) => execution.execution_count!);
    expect(counts).toEqual(counts.map((_, i) => counts[0]! + i));
    expect(new Set(executions.map((execution) => execution.id)).size).toBe(20);
    expect(executor.queueDepth).toBe(0);
    expect(executor.runningId).toBeUndefined();
  });
});
