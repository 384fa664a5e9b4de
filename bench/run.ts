/**
 * runcell's benchmark suite: runcell against the reference Jupyter tooling, side by side on the
 * same machine in one run.
 *
 *   roundtrip  warm execute round trip through KernelExecutor vs jupyter_client's BlockingKernelClient
 *   notebook   wall clock of `runcell run` vs `python3 -m nbconvert --execute` on a generated notebook
 *
 * Prints tables and the ratios against the goals, and writes bench/results/<timestamp>.json.
 * Usage: npx tsx bench/run.ts [--quick] [--only roundtrip|notebook] [--help]
 */
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { collectEnvironment, type Environment } from "./env.js";
import { type NotebookResult, runNotebookBench } from "./notebook.js";
import { installSignalHandlers, wasInterrupted } from "./proc.js";
import { type RoundtripResult, runRoundtrip, SNIPPETS } from "./roundtrip.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SECTIONS = ["roundtrip", "notebook"] as const;
type Section = (typeof SECTIONS)[number];

/** runcell p50 / jupyter_client p50 must be at most this. */
const ROUNDTRIP_GOAL = 0.95;
/** runcell wall / nbconvert wall must be at most this. */
const NOTEBOOK_GOAL = 0.5;

const USAGE = `usage: npx tsx bench/run.ts [options]   (or: make bench ARGS="...")

  --quick              fewer iterations, rounds and runs (a smoke test of the suite, noisy numbers)
  --only SECTION       roundtrip | notebook (comma-separated for several; default: both)
  --rounds N           round-trip rounds, each with fresh kernels (default 3, quick 1)
  --iterations N       measured executions per snippet per round (default 500, quick 100)
  --warmup N           warm-up executions per snippet per round (default 50, quick 10)
  --block N            measured executions per block; blocks alternate between engines (default 50, quick 25)
  --runs N             measured notebook runs per engine (default 5, quick 2)
  --cells N            cells in the generated notebook (default 40)
  --kernel NAME        kernelspec to use (default python3)
  --cli PATH           runcell's CLI for the notebook section (default dist/cli/main.js)
  -h, --help           this text`;

interface BenchOptions {
  quick: boolean;
  sections: Section[];
  rounds: number;
  iterations: number;
  warmup: number;
  block: number;
  notebookRuns: number;
  notebookWarmup: number;
  cells: number;
  kernel: string;
  cli: string;
}

function positiveInt(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min) throw new Error(`--${name} needs an integer ≥ ${min}`);
  return parsed;
}

function parseOptions(argv: string[]): BenchOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      rounds: { type: "string" },
      iterations: { type: "string" },
      warmup: { type: "string" },
      block: { type: "string" },
      runs: { type: "string" },
      cells: { type: "string" },
      kernel: { type: "string", default: "python3" },
      cli: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return undefined;
  const quick = values.quick ?? false;
  const sections = (values.only ?? SECTIONS.join(","))
    .split(",")
    .map((name) => name.trim())
    .filter(Boolean);
  for (const name of sections) {
    if (!(SECTIONS as readonly string[]).includes(name)) {
      throw new Error(`--only: unknown section ${JSON.stringify(name)} (choose from ${SECTIONS.join(", ")})`);
    }
  }
  return {
    quick,
    sections: sections as Section[],
    rounds: positiveInt("rounds", values.rounds, quick ? 1 : 3),
    iterations: positiveInt("iterations", values.iterations, quick ? 100 : 500),
    warmup: positiveInt("warmup", values.warmup, quick ? 10 : 50, 0),
    block: positiveInt("block", values.block, quick ? 25 : 50),
    notebookRuns: positiveInt("runs", values.runs, quick ? 2 : 5),
    notebookWarmup: 1,
    cells: positiveInt("cells", values.cells, 40),
    kernel: values.kernel ?? "python3",
    cli: resolve(values.cli ?? join(ROOT, "dist/cli/main.js")),
  };
}

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

/** Left-aligns the first column and right-aligns the others. */
function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const ms = (value: number): string => value.toFixed(2);
const ratio = (value: number): string => (Number.isFinite(value) ? value.toFixed(2) : "n/a");
const verdict = (value: number, goal: number): "PASS" | "MISS" => (value <= goal ? "PASS" : "MISS");

function printEnvironment(env: Environment): void {
  const python =
    "error" in env.python
      ? `python unavailable (${env.python.error})`
      : `python ${env.python.python} (jupyter_client ${env.python.jupyter_client}, ipykernel ${env.python.ipykernel}, ` +
        `nbconvert ${env.python.nbconvert}, pyzmq ${env.python.zmq})`;
  console.log(
    `runcell ${env.runcell ?? "?"} bench: ${env.cpu_count} CPUs (${env.cpu_model}), load ${env.load_average_at_start.join(" ")}\n` +
      `node ${env.node} (zeromq.js ${env.zeromq_js ?? "?"}), ${python}`,
  );
}

function printRoundtrip(result: RoundtripResult, options: BenchOptions): void {
  console.log(
    `\n== Warm execute round trip, ms: ${options.rounds} round(s) × ${options.iterations} executions ` +
      `(+${options.warmup} warm-up) per snippet per engine ==`,
  );
  console.log(
    `   fresh kernels each round; engines take turns in blocks of ${options.block}, never running at once\n` +
      "   values are the median over rounds of each round's percentile; ratio = runcell / jupyter_client\n",
  );
  const rows = [
    ["snippet", "runcell p50", "p95", "jupyter_client p50", "p95", "p50 ratio", "p95 ratio", "goal"],
  ];
  for (const snippet of result.snippets) {
    rows.push([
      snippet.code,
      ms(snippet.runcell.p50_ms),
      ms(snippet.runcell.p95_ms),
      ms(snippet.jupyter_client.p50_ms),
      ms(snippet.jupyter_client.p95_ms),
      ratio(snippet.p50_ratio),
      ratio(snippet.p95_ratio),
      `${verdict(snippet.p50_ratio, ROUNDTRIP_GOAL)} (≤ ${ROUNDTRIP_GOAL})`,
    ]);
  }
  rows.push([
    "overall (geomean)",
    "",
    "",
    "",
    "",
    ratio(result.overall_p50_ratio),
    ratio(result.overall_p95_ratio),
    `${verdict(result.overall_p50_ratio, ROUNDTRIP_GOAL)} (≤ ${ROUNDTRIP_GOAL})`,
  ]);
  console.log(table(rows));
  if (options.rounds > 1) {
    console.log(
      `\n   p50 ratio per round: ${result.snippets
        .map((snippet) => `${snippet.code} ${snippet.per_round_p50_ratio.map(ratio).join(" ")}`)
        .join(" | ")}`,
    );
  }
  const starts = (values: number[]) => values.map((value) => `${value}`).join(", ");
  console.log(
    `   kernel start, ms: runcell ${starts(result.kernel_start_ms.runcell)}; ` +
      `jupyter_client ${starts(result.kernel_start_ms.jupyter_client)}`,
  );
}

function printNotebook(result: NotebookResult): void {
  console.log(
    `\n== Notebook of ${result.cells} cells, wall clock in s: ${result.runs} run(s) per engine after ` +
      `${result.warmup} warm-up, alternating order ==\n`,
  );
  const engines = [
    ["runcell", result.runcell],
    ["nbconvert", result.nbconvert],
  ] as const;
  const rows = [["engine", "median", "min", "max", "runs"]];
  for (const [name, engine] of engines) {
    const { summary, median_ms: median } = engine;
    rows.push(
      engine.available && summary && median !== null
        ? [
            name,
            (median / 1000).toFixed(3),
            (summary.min / 1000).toFixed(3),
            (summary.max / 1000).toFixed(3),
            String(summary.n),
          ]
        : [name, "not available", "", "", ""],
    );
  }
  console.log(table(rows));
  for (const [name, engine] of engines) if (engine.command) console.log(`   ${name}: ${engine.command}`);
  for (const [name, engine] of engines) {
    if (engine.error) console.log(`\n   ${name} not available: ${engine.error.replaceAll("\n", "\n     ")}`);
  }
  if (result.warning) console.log(`\n   warning: ${result.warning}`);
  if (result.ratio !== null) {
    console.log(
      `\n   ratio runcell/nbconvert: ${ratio(result.ratio)} (goal ≤ ${NOTEBOOK_GOAL}) ${verdict(result.ratio, NOTEBOOK_GOAL)}`,
    );
  }
}

interface GoalLine {
  name: string;
  ratio: number | null;
  goal: number;
  verdict: "PASS" | "MISS" | "NOT AVAILABLE" | "ERROR";
  detail: string | null;
}

type SectionOutcome<T> = { status: "ok"; result: T } | { status: "error"; error: string };

/** After SIGINT/SIGTERM the signal handler cleans up and exits; nothing more is reported. */
function waitForExit(): Promise<number> {
  return new Promise(() => undefined);
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? text;
}

async function main(): Promise<number> {
  let options: BenchOptions | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (!options) {
    console.log(USAGE);
    return 0;
  }
  installSignalHandlers();
  const startedAt = new Date();
  const environment = await collectEnvironment(ROOT);
  printEnvironment(environment);

  const goals: GoalLine[] = [];
  let roundtrip: SectionOutcome<RoundtripResult> | undefined;
  let notebook: SectionOutcome<NotebookResult> | undefined;

  if (options.sections.includes("roundtrip")) {
    try {
      const result = await runRoundtrip({
        snippets: SNIPPETS,
        iterations: options.iterations,
        warmup: options.warmup,
        rounds: options.rounds,
        block: options.block,
        kernel: options.kernel,
        root: ROOT,
        log,
      });
      roundtrip = { status: "ok", result };
      printRoundtrip(result, options);
      goals.push({
        name: "roundtrip p50 ratio runcell/jupyter_client",
        ratio: result.overall_p50_ratio,
        goal: ROUNDTRIP_GOAL,
        verdict: verdict(result.overall_p50_ratio, ROUNDTRIP_GOAL),
        detail: null,
      });
    } catch (error) {
      if (wasInterrupted()) return waitForExit();
      const message = (error as Error).message;
      roundtrip = { status: "error", error: (error as Error).stack ?? message };
      console.log(`\n== Warm execute round trip: FAILED ==\n${message}`);
      goals.push({
        name: "roundtrip p50 ratio runcell/jupyter_client",
        ratio: null,
        goal: ROUNDTRIP_GOAL,
        verdict: "ERROR",
        detail: firstLine(message),
      });
    }
  }

  if (options.sections.includes("notebook")) {
    try {
      const result = await runNotebookBench({
        cells: options.cells,
        runs: options.notebookRuns,
        warmup: options.notebookWarmup,
        kernel: options.kernel,
        cli: options.cli,
        timeoutMs: 300_000,
        root: ROOT,
        log,
      });
      notebook = { status: "ok", result };
      printNotebook(result);
      const missing = [result.runcell, result.nbconvert].find((engine) => !engine.available);
      goals.push({
        name: "notebook wall ratio runcell/nbconvert",
        ratio: result.ratio,
        goal: NOTEBOOK_GOAL,
        verdict: result.ratio === null ? "NOT AVAILABLE" : verdict(result.ratio, NOTEBOOK_GOAL),
        detail: missing?.error ? firstLine(missing.error) : null,
      });
    } catch (error) {
      if (wasInterrupted()) return waitForExit();
      const message = (error as Error).message;
      notebook = { status: "error", error: (error as Error).stack ?? message };
      console.log(`\n== Notebook: FAILED ==\n${message}`);
      goals.push({
        name: "notebook wall ratio runcell/nbconvert",
        ratio: null,
        goal: NOTEBOOK_GOAL,
        verdict: "ERROR",
        detail: firstLine(message),
      });
    }
  }

  console.log("\n== Summary ==");
  for (const line of goals) {
    const value = line.ratio === null ? "n/a" : ratio(line.ratio);
    const detail = line.detail ? `: ${line.detail}` : "";
    console.log(`${line.name}: ${value} (goal ≤ ${line.goal}) ${line.verdict}${detail}`);
  }

  const finishedAt = new Date();
  const resultsDir = join(ROOT, "bench/results");
  await mkdir(resultsDir, { recursive: true });
  const file = join(
    resultsDir,
    `${startedAt
      .toISOString()
      .replaceAll(":", "-")
      .replace(/\.\d+Z$/, "Z")}.json`,
  );
  const report = {
    schema: 1,
    started_at: startedAt.toISOString(),
    finished_at: finishedAt.toISOString(),
    argv: process.argv.slice(2),
    options,
    goals: { roundtrip_p50_ratio_max: ROUNDTRIP_GOAL, notebook_wall_ratio_max: NOTEBOOK_GOAL },
    environment: {
      ...environment,
      load_average_at_end: os.loadavg().map((value) => Math.round(value * 100) / 100),
    },
    summary: goals,
    roundtrip: roundtrip ?? null,
    notebook: notebook ?? null,
  };
  await writeFile(file, `${JSON.stringify(report, null, 1)}\n`);
  console.log(`\nresults: ${relative(process.cwd(), file)}`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
