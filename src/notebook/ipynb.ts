import type { Execution, MimeBundle, Output } from "../execution/types.js";

/** A cell of an nbformat 4 notebook; unknown fields are kept as they are. */
export interface NotebookCell {
  cell_type: "code" | "markdown" | "raw";
  source: string | string[];
  metadata: Record<string, unknown>;
  id?: string;
  outputs?: Record<string, unknown>[];
  execution_count?: number | null;
  attachments?: Record<string, unknown>;
  [key: string]: unknown;
}

/** An nbformat 4 notebook; unknown fields are kept as they are. */
export interface Notebook {
  nbformat: 4;
  nbformat_minor: number;
  metadata: {
    kernelspec?: { name: string; display_name?: string; language?: string; [key: string]: unknown };
    language_info?: { name: string; [key: string]: unknown };
    [key: string]: unknown;
  };
  cells: NotebookCell[];
  [key: string]: unknown;
}

/** One output as nbformat 4 stores it. */
export type NbOutput =
  | { output_type: "stream"; name: "stdout" | "stderr"; text: string }
  | {
      output_type: "execute_result";
      execution_count: number | null;
      data: MimeBundle;
      metadata: Record<string, unknown>;
    }
  | { output_type: "display_data"; data: MimeBundle; metadata: Record<string, unknown> }
  | { output_type: "error"; ename: string; evalue: string; traceback: string[] };

/** Joins nbformat's multiline string into one string. */
export function joinSource(source: string | string[]): string {
  return typeof source === "string" ? source : source.join("");
}

/** Converts runcell outputs to nbformat outputs (display ids are transient and not stored). */
export function toNbOutputs(outputs: readonly Output[]): NbOutput[] {
  return outputs.map((output): NbOutput => {
    switch (output.type) {
      case "stream":
        return { output_type: "stream", name: output.name, text: output.text };
      case "result":
        return {
          output_type: "execute_result",
          execution_count: output.execution_count,
          data: output.data,
          metadata: output.metadata,
        };
      case "display":
        return { output_type: "display_data", data: output.data, metadata: output.metadata };
      case "error":
        return {
          output_type: "error",
          ename: output.name,
          evalue: output.value,
          traceback: output.traceback,
        };
      default:
        return output satisfies never;
    }
  });
}

/** Converts nbformat outputs back to runcell outputs; unknown output types are skipped. */
export function fromNbOutputs(outputs: readonly Record<string, unknown>[]): Output[] {
  const result: Output[] = [];
  for (const raw of outputs) {
    const data = (raw.data ?? {}) as MimeBundle;
    const metadata = (raw.metadata ?? {}) as Record<string, unknown>;
    switch (raw.output_type) {
      case "stream":
        result.push({
          type: "stream",
          name: raw.name === "stderr" ? "stderr" : "stdout",
          text: joinSource((raw.text ?? "") as string | string[]),
        });
        break;
      case "execute_result":
        result.push({
          type: "result",
          execution_count: typeof raw.execution_count === "number" ? raw.execution_count : null,
          data: joinBundle(data),
          metadata,
        });
        break;
      case "display_data":
        result.push({ type: "display", data: joinBundle(data), metadata });
        break;
      case "error":
        result.push({
          type: "error",
          name: String(raw.ename ?? "Error"),
          value: String(raw.evalue ?? ""),
          traceback: Array.isArray(raw.traceback) ? raw.traceback.map(String) : [],
        });
        break;
    }
  }
  return result;
}

/** nbformat allows text MIME values as line lists; runcell keeps them as one string. */
function joinBundle(data: MimeBundle): MimeBundle {
  const joined: MimeBundle = {};
  for (const [mime, value] of Object.entries(data)) {
    joined[mime] = Array.isArray(value) && value.every((v) => typeof v === "string") ? value.join("") : value;
  }
  return joined;
}

/** The cell-level timing and status metadata runcell writes (nbclient's keys plus its own). */
export function executionMetadata(execution: Execution): Record<string, unknown> {
  return {
    execution: {
      "iopub.status.busy": execution.started_at,
      "iopub.status.idle": execution.finished_at,
    },
    runcell: { status: execution.status, duration_ms: execution.duration_ms, execution_id: execution.id },
  };
}

/** Serialises as nbformat does: one-space indent, trailing newline. */
export function serializeNotebook(notebook: Notebook): string {
  return `${JSON.stringify(notebook, null, 1)}\n`;
}
