import { KernelExecutor } from "../execution/kernel-executor.js";
import type { Execution, Output } from "../execution/types.js";
import type { Kernel } from "../kernels/kernel.js";
import { executionMetadata, joinSource, type Notebook, toNbOutputs } from "./ipynb.js";

export interface RunNotebookOptions {
  /** A started kernel; the caller owns it (runNotebook restarts it if it dies, never disposes it). */
  kernel: Kernel;
  /** Per-cell time limit in ms. */
  timeoutMs?: number;
  /** Run every cell even after a failure. Default false: stop at the first failing cell. */
  allowErrors?: boolean;
  /** Called before each code cell runs, with its position among the code cells to run. */
  onCellStart?: (position: number, total: number, cellIndex: number) => void;
  /** Called after each code cell ran. */
  onCellDone?: (position: number, total: number, execution: Execution) => void;
  signal?: AbortSignal;
}

export interface RunNotebookResult {
  /** The notebook with outputs, counts and timing metadata (the input is not modified). */
  notebook: Notebook;
  /** One record per code cell that ran, in order. */
  executions: Execution[];
  /** Index in `cells` of the first failing cell, or null. */
  failedCell: number | null;
}

/**
 * The kernel a notebook asks for: `override` (from --kernel), else its kernelspec's name, else
 * python3. Works on unvalidated JSON so the kernel can start while the notebook is validated.
 */
export function notebookKernelName(notebook: unknown, override?: string): string {
  if (override) return override;
  const kernelspec = (notebook as { metadata?: { kernelspec?: { name?: unknown } } } | null)?.metadata
    ?.kernelspec;
  return typeof kernelspec?.name === "string" && kernelspec.name ? kernelspec.name : "python3";
}

/**
 * Runs the code cells of a notebook in order in one kernel, as `nbconvert --execute` does, and
 * returns a copy with outputs. Stops at the first failing cell unless `allowErrors`; cells after
 * it keep no outputs and no execution count.
 */
export async function runNotebook(input: Notebook, options: RunNotebookOptions): Promise<RunNotebookResult> {
  const notebook = structuredClone(input);
  const kernel = options.kernel;
  const codeCells = notebook.cells.flatMap((cell, index) =>
    cell.cell_type === "code" && joinSource(cell.source).trim() !== "" ? [index] : [],
  );
  // Every code cell starts clean: outputs of a previous run must not survive a partial run.
  for (const cell of notebook.cells) {
    if (cell.cell_type !== "code") continue;
    cell.outputs = [];
    cell.execution_count = null;
  }
  const executions: Execution[] = [];
  let failedCell: number | null = null;
  const executor = new KernelExecutor(kernel);
  try {
    const info = kernel.info?.language_info;
    if (info) notebook.metadata.language_info = { ...notebook.metadata.language_info, ...info };
    for (const [position, cellIndex] of codeCells.entries()) {
      const cell = notebook.cells[cellIndex]!;
      options.onCellStart?.(position, codeCells.length, cellIndex);
      if (kernel.status === "dead") await kernel.restart({ signal: options.signal });
      const execution = await executor.execute(joinSource(cell.source), {
        timeoutMs: options.timeoutMs,
        signal: options.signal,
      });
      executions.push(execution);
      cell.outputs = toNbOutputs(withFailureOutput(execution));
      cell.execution_count = execution.execution_count;
      cell.metadata = { ...cell.metadata, ...executionMetadata(execution) };
      options.onCellDone?.(position, codeCells.length, execution);
      if (execution.status !== "completed") {
        failedCell ??= cellIndex;
        if (!options.allowErrors || options.signal?.aborted) break;
      }
    }
  } finally {
    await executor.dispose();
  }
  return { notebook, executions, failedCell };
}

/**
 * A cell that failed without an error output of its own (timeout, kernel death) gets one, so
 * the saved notebook says why it stopped.
 */
function withFailureOutput(execution: Execution): Output[] {
  const { error, outputs } = execution;
  if (!error || execution.status === "completed") return outputs;
  if (execution.status === "failed" && outputs.some((output) => output.type === "error")) return outputs;
  return [
    ...outputs,
    { type: "error", name: error.name, value: error.value, traceback: [`${error.name}: ${error.value}`] },
  ];
}
