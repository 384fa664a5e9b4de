import { stripAnsi } from "../execution/classify.js";
import type { Execution, Output } from "../execution/types.js";
import type { BlockRecord, ProjectInfo } from "../store/types.js";
import { fromNbOutputs } from "./ipynb.js";

export interface ContextOptions {
  /** The most characters the rendering may take. Default 20000. */
  maxChars?: number;
  format?: "markdown" | "json";
}

/** One block as a model sees it. */
export interface ContextBlock {
  index: number;
  id: string;
  cell_type: string;
  status: string;
  status_reason: string | null;
  source: string;
  output: string;
  error: { name: string; value: string; traceback: string[] } | null;
  duration_ms: number | null;
}

/** Keeps the head and the tail of `text` within `max` characters, saying how much was left out. */
export function elide(text: string, max: number): string {
  if (text.length <= max) return text;
  const keep = Math.max(0, max - 40);
  const head = Math.ceil(keep * 0.6);
  const tail = keep - head;
  return `${text.slice(0, head)}\n… [${text.length - keep} characters elided] …\n${text.slice(text.length - tail)}`;
}

function outputText(outputs: readonly Output[]): string {
  const parts: string[] = [];
  for (const output of outputs) {
    if (output.type === "stream") parts.push(output.text);
    else if (output.type === "result" || output.type === "display") {
      const text = output.data["text/plain"];
      const rich = Object.keys(output.data).filter((m) => m !== "text/plain");
      if (typeof text === "string") parts.push(`${text}\n`);
      if (rich.length > 0) parts.push(`[${rich.join(", ")} output]\n`);
    }
  }
  return parts.join("");
}

/** The traceback lines worth a model's attention: the last frames and the error line, without colour codes. */
function relevantTraceback(traceback: readonly string[]): string[] {
  const lines = traceback
    .flatMap((entry) => stripAnsi(entry).split("\n"))
    .filter((line) => line.trim() !== "");
  return lines.filter((line) => !/^-{10,}$/.test(line)).slice(-8);
}

/**
 * Renders a project for a model's prompt: each block's code, status, output (long ones keep
 * head and tail), error with its relevant traceback lines, and duration, within `maxChars`.
 * When everything does not fit, outputs are cut shorter first, then sources, then the oldest
 * blocks are summarised in one line each.
 */
export function renderContext(
  project: ProjectInfo,
  blocks: readonly BlockRecord[],
  lastExecution: (block: BlockRecord) => Execution | null,
  options: ContextOptions = {},
): string | { project: Record<string, unknown>; blocks: ContextBlock[]; truncated: boolean } {
  const maxChars = options.maxChars ?? 20_000;
  const full: ContextBlock[] = blocks.map((block, index) => {
    const execution = block.cell_type === "code" ? lastExecution(block) : null;
    const outputs =
      execution?.outputs ?? (block.imported_outputs ? fromNbOutputs(block.imported_outputs) : []);
    const errorOutput = outputs.find((o): o is Extract<Output, { type: "error" }> => o.type === "error");
    const error = execution?.error ?? errorOutput ?? null;
    return {
      index: index + 1,
      id: block.id,
      cell_type: block.cell_type,
      status: block.status,
      status_reason: block.status_reason,
      source: block.source,
      output: outputText(outputs),
      error: error
        ? {
            name: error.name,
            value: error.value,
            // A dead kernel's "traceback" is its stderr banner: noise in a prompt.
            traceback:
              "category" in error && error.category === "kernel_died"
                ? []
                : relevantTraceback(error.traceback),
          }
        : null,
      duration_ms: execution?.duration_ms ?? null,
    };
  });
  const header = { id: project.id, name: project.name, kernel: project.kernel, blocks: blocks.length };
  // Shrink step by step until the rendering fits.
  for (const [outputMax, sourceMax, summariseFirst] of [
    [4000, 8000, 0],
    [1500, 4000, 0],
    [600, 2000, 0],
    [200, 800, 0],
    [120, 400, Math.floor(full.length / 2)],
    [80, 200, full.length - 3],
    [0, 0, full.length],
  ] as const) {
    const shaped = full.map((block, i) =>
      i < summariseFirst
        ? { ...block, source: elide(block.source, 60), output: "" }
        : { ...block, source: elide(block.source, sourceMax), output: elide(block.output, outputMax) },
    );
    const truncated =
      outputMax !== 4000 ||
      shaped.some((b, i) => b.output !== full[i]!.output || b.source !== full[i]!.source);
    const rendered =
      options.format === "json"
        ? JSON.stringify({ project: header, blocks: shaped, truncated })
        : markdown(header, shaped, summariseFirst);
    if (rendered.length <= maxChars || outputMax === 0) {
      if (options.format === "json") return { project: header, blocks: shaped, truncated };
      return rendered.length <= maxChars
        ? rendered
        : `${rendered.slice(0, Math.max(0, maxChars - 30))}\n… [context cut to fit]\n`;
    }
  }
  return "";
}

function markdown(
  project: { name: string; kernel: string; blocks: number },
  blocks: ContextBlock[],
  summarised: number,
): string {
  const lines = [
    `# Notebook project "${project.name}" (kernel ${project.kernel}, ${project.blocks} blocks)`,
    "",
  ];
  for (const [i, block] of blocks.entries()) {
    const timing = block.duration_ms !== null ? `, ${Math.round(block.duration_ms)} ms` : "";
    if (i < summarised) {
      lines.push(`- block ${block.index} [${block.status}] ${block.source.split("\n")[0]}`);
      continue;
    }
    if (block.cell_type !== "code") {
      lines.push(`## Block ${block.index} (${block.cell_type})`, "", block.source, "");
      continue;
    }
    lines.push(`## Block ${block.index} [${block.status}${timing}] id ${block.id}`);
    if (block.status_reason) lines.push(`Status: ${block.status_reason}`);
    lines.push("```python", block.source, "```");
    if (block.output) lines.push("Output:", "```", block.output.replace(/\n$/, ""), "```");
    if (block.error) {
      lines.push(`Error: ${block.error.name}: ${block.error.value}`);
      if (block.error.traceback.length > 0) lines.push("```", ...block.error.traceback, "```");
    }
    lines.push("");
  }
  return lines.join("\n");
}
