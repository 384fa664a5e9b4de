import { existsSync, statSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { SYSTEM_PYTHON } from "./env.js";
import { describeFailure, onInterrupt, runProcess } from "./proc.js";
import { median, round, roundSummary, type Summary, summarize } from "./stats.js";

export type NotebookEngine = "runcell" | "nbconvert";

export interface NotebookOptions {
  cells: number;
  /** Measured runs per engine. */
  runs: number;
  /** Unmeasured runs per engine first (imports and page cache warmed for both). */
  warmup: number;
  kernel: string;
  /** runcell's CLI entry point (normally dist/cli/main.js). */
  cli: string;
  /** Per run, for either engine. */
  timeoutMs: number;
  root: string;
  log: (line: string) => void;
}

export interface NotebookEngineResult {
  available: boolean;
  /** Why the engine could not be measured (missing CLI, failed run, wrong output). */
  error: string | null;
  /** The command of the first run, with the temporary directory shown as `$TMP`. */
  command: string | null;
  wall_ms: number[];
  summary: Summary | null;
  median_ms: number | null;
}

export interface NotebookResult {
  cells: number;
  runs: number;
  warmup: number;
  runcell: NotebookEngineResult;
  nbconvert: NotebookEngineResult;
  /** runcell median wall / nbconvert median wall, or null when either is unavailable. */
  ratio: number | null;
  /** Set when dist/ is older than src/ (the CLI measured may not be the current code). */
  warning: string | null;
}

const cellSource = (index: number): string => `x${index} = ${index}*2\nprint(x${index})`;

/** An nbformat 4.5 notebook of `cells` small code cells, each printing one number. */
export function makeNotebook(cells: number, kernel: string): Record<string, unknown> {
  return {
    cells: Array.from({ length: cells }, (_, index) => ({
      cell_type: "code",
      execution_count: null,
      id: `cell-${index}`,
      metadata: {},
      outputs: [],
      source: cellSource(index),
    })),
    metadata: {
      kernelspec: { name: kernel, display_name: "Python 3", language: "python" },
      language_info: { name: "python" },
    },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

/** Joins nbformat's multiline strings (a string or a list of strings). */
function text(value: unknown): string {
  if (typeof value === "string") return value;
  return Array.isArray(value) ? value.map(String).join("") : "";
}

/** Checks that an executed notebook holds every cell's expected stdout; returns the problem, if any. */
export async function verifyExecuted(path: string, cells: number): Promise<string | null> {
  let notebook: { cells?: Array<{ cell_type?: string; outputs?: Array<Record<string, unknown>> }> };
  try {
    notebook = JSON.parse(await readFile(path, "utf8")) as typeof notebook;
  } catch (error) {
    return `output notebook ${path} is missing or unreadable: ${(error as Error).message}`;
  }
  const code = (notebook.cells ?? []).filter((cell) => cell.cell_type === "code");
  if (code.length !== cells) return `output notebook has ${code.length} code cells, expected ${cells}`;
  for (const [index, cell] of code.entries()) {
    const stdout = (cell.outputs ?? [])
      .filter((output) => output.output_type === "stream" && output.name === "stdout")
      .map((output) => text(output.text))
      .join("");
    if (stdout !== `${index * 2}\n`) {
      return `cell ${index}: stdout ${JSON.stringify(stdout)}, expected ${JSON.stringify(`${index * 2}\n`)}`;
    }
  }
  return null;
}

/** The newest modification time under `dir`, in ms (0 if it does not exist). */
async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  let entries: Array<{ name: string; isDirectory(): boolean }>;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? await newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

interface EngineSpec {
  name: NotebookEngine;
  argv: (notebook: string, outDir: string, outName: string) => string[];
  /** Where `argv` writes the executed notebook. */
  output: (outDir: string, outName: string) => string;
}

function engines(cli: string): EngineSpec[] {
  return [
    {
      name: "runcell",
      argv: (notebook, outDir, outName) => [
        process.execPath,
        cli,
        "run",
        notebook,
        "-o",
        join(outDir, `${outName}.ipynb`),
      ],
      output: (outDir, outName) => join(outDir, `${outName}.ipynb`),
    },
    {
      name: "nbconvert",
      argv: (notebook, outDir, outName) => [
        SYSTEM_PYTHON,
        "-m",
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        notebook,
        "--output-dir",
        outDir,
        "--output",
        outName,
      ],
      output: (outDir, outName) => join(outDir, `${outName}.ipynb`),
    },
  ];
}

function emptyResult(): NotebookEngineResult {
  return { available: true, error: null, command: null, wall_ms: [], summary: null, median_ms: null };
}

/**
 * Times the wall clock of executing one generated notebook with runcell's CLI and with
 * nbconvert, alternating which goes first on each run. An engine that is missing or fails is
 * reported as unavailable (with the reason) and the other one is still measured.
 */
export async function runNotebookBench(options: NotebookOptions): Promise<NotebookResult> {
  const { cli } = options;
  const results: Record<NotebookEngine, NotebookEngineResult> = {
    runcell: emptyResult(),
    nbconvert: emptyResult(),
  };
  let warning: string | null = null;
  if (!existsSync(cli)) {
    results.runcell.available = false;
    results.runcell.error = `${cli} does not exist (build it with \`bash scripts/setup.sh\` or \`make setup\`)`;
  } else if ((await newestMtime(join(options.root, "src"))) > statSync(cli).mtimeMs) {
    warning = "dist/ is older than src/: the runcell CLI measured may not match the current source";
  }

  const dir = await mkdtemp(join(tmpdir(), "runcell-bench-"));
  const removeDir = () => rm(dir, { recursive: true, force: true });
  const unregister = onInterrupt(removeDir);
  try {
    const notebook = join(dir, "bench.ipynb");
    await writeFile(notebook, JSON.stringify(makeNotebook(options.cells, options.kernel), null, 1));
    const specs = engines(cli);
    const env = { ...process.env, PYDEVD_DISABLE_FILE_VALIDATION: "1" };
    const total = options.warmup + options.runs;
    for (let run = 0; run < total; run++) {
      const measured = run >= options.warmup;
      const order = run % 2 === 0 ? specs : [...specs].reverse();
      for (const spec of order) {
        const result = results[spec.name];
        if (!result.available) continue;
        const outName = `out-${spec.name}-${run}`;
        const argv = spec.argv(notebook, dir, outName);
        result.command ??= argv
          .map((arg) => (arg === process.execPath ? "node" : arg.replaceAll(dir, "$TMP")))
          .map((arg) => (arg.startsWith(options.root) ? relative(options.root, arg) : arg))
          .join(" ");
        const label = measured ? `run ${run - options.warmup + 1}/${options.runs}` : "warm-up";
        options.log(`notebook: ${label}, ${spec.name}`);
        const outcome = await runProcess(argv, { cwd: dir, env, timeoutMs: options.timeoutMs });
        const problem =
          outcome.code !== 0 || outcome.timedOut
            ? describeFailure(outcome)
            : await verifyExecuted(spec.output(dir, outName), options.cells);
        if (problem) {
          result.available = false;
          result.error = problem;
          options.log(`notebook: ${spec.name} is not available: ${problem.split("\n")[0]}`);
          continue;
        }
        if (measured) result.wall_ms.push(round(outcome.wallMs, 1));
      }
    }
  } finally {
    unregister();
    await removeDir();
  }

  for (const result of Object.values(results)) {
    if (!result.available) result.wall_ms = [];
    if (result.wall_ms.length === 0) continue;
    result.summary = roundSummary(summarize(result.wall_ms), 1);
    result.median_ms = round(median(result.wall_ms), 1);
  }
  const ours = results.runcell.median_ms;
  const theirs = results.nbconvert.median_ms;
  return {
    cells: options.cells,
    runs: options.runs,
    warmup: options.warmup,
    runcell: results.runcell,
    nbconvert: results.nbconvert,
    ratio: ours !== null && theirs !== null ? round(ours / theirs) : null,
    warning,
  };
}
