import { readFile, rename, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { SANDBOXED_KERNEL_ENV } from "../../config/config.js";
import type { Execution } from "../../execution/types.js";
import type { Kernel } from "../../kernels/kernel.js";
import { resolveLimits } from "../../sandbox/limits.js";
import type { SandboxMode } from "../../sandbox/sandbox-factory.js";
import { notebookKernelName } from "../../notebook/run-notebook.js";
import type { CliContext } from "../context.js";
import { EXIT, UsageError } from "../errors.js";

export const RUN_HELP = `Usage: runcell run NOTEBOOK.ipynb [-o OUT.ipynb] [--kernel NAME] [--timeout SECONDS] [--allow-errors]
                   [--network] [-m MB] [--sandbox bwrap|none]

Runs the code cells of a notebook in order in a fresh kernel and saves it with outputs,
execution counts and per-cell timing metadata (a drop-in for \`jupyter nbconvert --execute\`).

Options:
  -o, --output FILE    where to write the executed notebook (default: overwrite NOTEBOOK)
  -k, --kernel NAME    kernel to use (default: the notebook's kernelspec, else python3)
  -t, --timeout SEC    time limit per cell, in seconds (default: none)
      --allow-errors   run every cell even after one fails, and exit 0
      --network        let the kernel use the network (default: none)
  -m, --memory MB      memory limit of the kernel in MiB (default 512)
      --sandbox MODE   bwrap (default): the kernel runs confined, with the notebook's directory
                       as its read-only working directory; none: unconfined (trusted notebooks only)

Exit status: 0 when every cell succeeded (or --allow-errors), 1 when a cell failed,
2 for a usage error (missing file, invalid notebook, unknown kernel), 125 if the kernel
could not be started.`;

export interface RunArgs {
  notebook: string;
  output?: string;
  kernel?: string;
  timeoutSeconds?: number;
  allowErrors: boolean;
  network: boolean;
  memoryMb?: number;
  sandbox: SandboxMode;
}

/** Parses `--timeout` as positive seconds. */
export function parseTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 86_400) {
    throw new UsageError(
      `--timeout takes a number of seconds between 0 and 86400, not ${JSON.stringify(value)}`,
    );
  }
  return seconds;
}

/** `runcell run`: execute a notebook and save it with its outputs. */
export async function runCommand(args: RunArgs, ctx: CliContext): Promise<number> {
  let text: string;
  try {
    text = await readFile(args.notebook, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === "ENOENT"
        ? `no such notebook: ${args.notebook}`
        : `cannot read ${args.notebook}: ${(error as Error).message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${args.notebook} is not valid JSON: ${(error as Error).message}`);
  }
  const kernelName = notebookKernelName(json, args.kernel);
  // Fail on an unknown kernel before anything starts, with the list of known ones.
  const manager = ctx.kernels();
  await manager.getKernelspec(kernelName);

  // The kernel runs confined: the notebook's directory is its read-only working directory, with
  // a private writable /tmp, no network unless asked, and the default memory and process limits.
  const started = performance.now();
  // The sandbox runs as an unprivileged user: it can enter the notebook's directory only when
  // others may. Otherwise the kernel starts in an empty workspace rather than failing.
  const notebookDir = dirname(resolve(args.notebook));
  const shareable = args.sandbox === "none" || ((await stat(notebookDir)).mode & 0o005) === 0o005;
  if (!shareable) {
    ctx.stderr.write(
      `runcell: warning: ${notebookDir} is not readable by other users, so the sandboxed kernel starts in an ` +
        `empty /workspace (chmod o+rx ${notebookDir} to let it read the files next to the notebook)\n`,
    );
  }
  const lease = await (
    await ctx.sandboxes(args.sandbox)
  ).lease({
    limits: resolveLimits(
      args.memoryMb === undefined ? {} : { memoryBytes: Math.round(args.memoryMb * 1024 * 1024) },
    ),
    network: args.network,
    workspace: shareable ? { hostPath: notebookDir, readOnly: true } : undefined,
    processCpuLimit: false,
  });
  if (args.sandbox === "none") {
    ctx.stderr.write(
      "runcell: warning: --sandbox none runs the notebook with all of your user's rights, unconfined\n",
    );
  }
  // The kernel takes most of a run's start-up: launch it first, and only once its process
  // exists load the notebook code (the schema library) and validate, while it boots. Loading
  // modules earlier would hold up the launch's own steps by tens of milliseconds.
  let spawned!: () => void;
  const launched = new Promise<void>((resolve) => {
    spawned = resolve;
  });
  const kernelStart = manager.start({
    name: kernelName,
    signal: ctx.signal,
    sandbox: lease.sandbox,
    cwd: args.sandbox === "none" ? dirname(resolve(args.notebook)) : undefined,
    envOverrides: args.sandbox === "none" ? {} : SANDBOXED_KERNEL_ENV,
    onSpawn: spawned,
  });
  kernelStart.catch(() => undefined);
  // A confined kernel keeps nothing once the notebook is saved (its /tmp vanishes with it): it
  // is stopped at once rather than politely. An unconfined one may have files to flush.
  const disposeKernel = (k: Kernel) => k.dispose({ now: args.sandbox !== "none" });
  let kernel: Kernel | undefined;
  try {
    await Promise.race([
      launched,
      kernelStart.then(
        () => undefined,
        () => undefined,
      ),
    ]);
    const { validateNotebook } = await import("../../notebook/parse-notebook.js");
    const { serializeNotebook } = await import("../../notebook/ipynb.js");
    const { runNotebook } = await import("../../notebook/run-notebook.js");
    const notebook = validateNotebook(json, args.notebook);
    kernel = await kernelStart;
    const progress = ctx.stderr.isTTY ? ctx.stderr : undefined;
    const result = await runNotebook(notebook, {
      kernel,
      timeoutMs: args.timeoutSeconds === undefined ? undefined : args.timeoutSeconds * 1000,
      allowErrors: args.allowErrors,
      signal: ctx.signal,
      onCellStart: (position, total, cellIndex) => {
        progress?.write(`\r\x1b[K[${position + 1}/${total}] running cell ${cellIndex + 1}…`);
      },
      onCellDone: (position, total, execution) => {
        progress?.write(
          `\r\x1b[K[${position + 1}/${total}] ${execution.status} (${formatMs(execution.duration_ms)})`,
        );
      },
    });
    progress?.write("\r\x1b[K");
    const out = args.output ?? args.notebook;
    // Save while the kernel shuts down: both are needed before exit, neither needs the other.
    await Promise.all([writeAtomically(out, serializeNotebook(result.notebook)), disposeKernel(kernel)]);
    return report(result, kernelName, out, started, args, ctx);
  } finally {
    // Covers an invalid notebook or an abort: the kernel must not outlive the command.
    kernel ??= await kernelStart.catch(() => undefined);
    if (kernel) await disposeKernel(kernel);
    lease.release();
  }
}

function report(
  result: { executions: Execution[]; failedCell: number | null },
  kernelName: string,
  out: string,
  started: number,
  args: RunArgs,
  ctx: CliContext,
): number {
  const ran = result.executions.length;
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  if (result.failedCell !== null) {
    const failure = result.executions.find((e) => e.status !== "completed");
    ctx.stderr.write(`runcell: cell ${result.failedCell + 1} ${describeFailure(failure)}\n`);
  }
  ctx.stderr.write(
    `runcell: ran ${ran} cell${ran === 1 ? "" : "s"} with ${kernelName} in ${seconds}s; wrote ${out}\n`,
  );
  if (ctx.signal.aborted) return 130;
  return result.failedCell !== null && !args.allowErrors ? EXIT.failed : EXIT.ok;
}

function describeFailure(execution: Execution | undefined): string {
  if (!execution) return "failed";
  const error = execution.error;
  const what = error ? `${error.name}: ${error.value}`.trim() : "";
  return `${execution.status}${what ? ` — ${what}` : ""}`;
}

function formatMs(ms: number | null): string {
  if (ms === null) return "-";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Writes via a temporary file and rename, so a crash never leaves half a notebook. */
async function writeAtomically(path: string, content: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  await writeFile(tmp, content);
  await rename(tmp, path);
}
