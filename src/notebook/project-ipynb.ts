import type { BlockRecord, ProjectInfo } from "../store/types.js";
import type { Execution } from "../execution/types.js";
import { executionMetadata, joinSource, type Notebook, type NotebookCell, toNbOutputs } from "./ipynb.js";

/** Cell ids nbformat accepts: 1 to 64 letters, digits, - and _. */
const CELL_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * A project as an nbformat 4.5 notebook: every block a cell in order, code cells with the
 * outputs and execution count of their last run (or those they were imported with), and
 * runcell's per-cell status and timing in `metadata.runcell`.
 */
export function projectToNotebook(
  project: ProjectInfo,
  blocks: readonly BlockRecord[],
  lastExecution: (block: BlockRecord) => Execution | null,
  language: string,
): Notebook {
  const cells: NotebookCell[] = blocks.map((block) => {
    const id = CELL_ID.test(block.id.slice(0, 64))
      ? block.id.slice(0, 64)
      : block.id.replace(/[^A-Za-z0-9_-]/g, "");
    const metadata = { ...block.metadata };
    if (block.cell_type !== "code") {
      const cell: NotebookCell = { id, cell_type: block.cell_type, metadata, source: block.source };
      if (block.attachments) cell.attachments = block.attachments;
      return cell;
    }
    const execution = lastExecution(block);
    const runcell: Record<string, unknown> = {};
    if (execution) {
      const meta = executionMetadata(execution);
      Object.assign(metadata, { execution: meta.execution });
      const { status: executionStatus, ...timing } = meta.runcell as Record<string, unknown>;
      Object.assign(runcell, timing, {
        execution_status: executionStatus,
        started_at: execution.started_at,
        finished_at: execution.finished_at,
      });
    }
    // The block's status (STALE included), not its last execution's.
    metadata.runcell = {
      ...runcell,
      block_id: block.id,
      status: block.status,
      status_reason: block.status_reason,
    };
    return {
      id,
      cell_type: "code",
      metadata,
      source: block.source,
      execution_count: execution ? execution.execution_count : block.execution_count,
      outputs: execution ? toNbOutputs(execution.outputs) : (block.imported_outputs ?? []),
    };
  });
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      ...project.metadata,
      kernelspec: { name: project.kernel, display_name: project.kernel, language },
      language_info: { name: language },
      runcell: { project_id: project.id, name: project.name },
    },
    cells,
  };
}

/** The blocks an imported notebook becomes, in order (outputs kept until a block runs here). */
export function notebookToBlocks(notebook: Notebook): Array<{
  cell_type: BlockRecord["cell_type"];
  source: string;
  metadata: Record<string, unknown>;
  attachments: Record<string, unknown> | null;
  imported_outputs: Record<string, unknown>[] | null;
  execution_count: number | null;
}> {
  return notebook.cells.map((cell) => {
    const { runcell: _ours, ...metadata } = cell.metadata ?? {};
    return {
      cell_type: cell.cell_type,
      source: joinSource(cell.source),
      metadata,
      attachments: cell.attachments ?? null,
      imported_outputs: cell.cell_type === "code" ? (cell.outputs ?? []) : null,
      execution_count: cell.cell_type === "code" ? (cell.execution_count ?? null) : null,
    };
  });
}
