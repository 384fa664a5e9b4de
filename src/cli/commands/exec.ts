import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Execution } from "../../execution/types.js";
import { LANGUAGES } from "../../runner/languages.js";
import type { SandboxMode } from "../../sandbox/sandbox-factory.js";
import type { CliContext } from "../context.js";
import { EXIT, UsageError } from "../errors.js";

export const EXEC_HELP = `Usage: runcell exec [-l python|bash|node] [-t SECONDS] [-m MB] [--network] [--workspace DIR]
                    [--read-only] [--json] [--sandbox bwrap|none] (-e CODE | FILE | -)

Runs code once in a fresh sandbox: its own namespaces (no network unless --network), a
read-only view of the system, a private empty /workspace and /tmp, an unprivileged user, and
limits on time, memory, processes, output, file size and open files.

Options:
  -e, --eval CODE        the code to run (else FILE, or - for standard input)
  -l, --language LANG    python (default), bash or node
  -t, --timeout SEC      wall-time limit in seconds (default 30, at most 600)
  -m, --memory MB        memory limit in MiB (default 512, at most 4096)
      --network          allow network access
      --workspace DIR    mount host directory DIR as /workspace (read-write; --read-only for read-only)
      --json             print one Execution record instead of the program's output
      --sandbox MODE     bwrap (default) or none: no isolation at all, only for trusted code

Exit status: the program's own; 124 when the time limit ended it; 137 when a memory or
process limit killed it; 125 when runcell itself failed; 2 for a usage error.`;

export interface ExecArgs {
  code?: string;
  file?: string;
  language: string;
  timeoutSeconds?: number;
  memoryMb?: number;
  network: boolean;
  workspace?: string;
  readOnly: boolean;
  json: boolean;
  sandbox: SandboxMode;
}

/** Parses a positive number option, with its name in the error. */
export function positiveNumber(name: string, value: string | undefined, max: number): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0 || number > max) {
    throw new UsageError(
      `${name} takes a number greater than 0 and at most ${max}, not ${JSON.stringify(value)}`,
    );
  }
  return number;
}

async function readCode(args: ExecArgs): Promise<string> {
  if (args.code !== undefined) {
    if (args.file !== undefined) throw new UsageError("pass either -e CODE or a FILE, not both");
    return args.code;
  }
  if (args.file === undefined)
    throw new UsageError(`nothing to run: pass -e CODE, a FILE, or - for standard input\n\n${EXEC_HELP}`);
  if (args.file === "-") {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  }
  try {
    return await readFile(args.file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === "ENOENT"
        ? `no such file: ${args.file}`
        : `cannot read ${args.file}: ${(error as Error).message}`,
    );
  }
}

/** Maps an Execution onto the CLI's exit-status contract. */
export function execExitCode(execution: Execution): number {
  if (execution.limit === "time") return EXIT.timeout;
  if (execution.limit === "memory" || execution.limit === "pids") return EXIT.killed;
  if (execution.error?.category === "environment") return EXIT.internal;
  if (execution.status === "cancelled") return 130;
  if (execution.limit === "output")
    return execution.exit_code && execution.exit_code !== 137 ? execution.exit_code : 1;
  return execution.exit_code ?? (execution.status === "completed" ? 0 : 1);
}

/** `runcell exec`: one confined run, output streamed, the program's exit code returned. */
export async function execCommand(args: ExecArgs, ctx: CliContext): Promise<number> {
  if (!(LANGUAGES as readonly string[]).includes(args.language)) {
    throw new UsageError(
      `unknown language ${JSON.stringify(args.language)}: use one of ${LANGUAGES.join(", ")}`,
    );
  }
  const code = await readCode(args);
  if (args.sandbox === "none") {
    ctx.stderr.write(
      "runcell: warning: --sandbox none runs the code with all of your user's rights, unconfined\n",
    );
  }
  const runner = await ctx.runner(args.sandbox);
  const execution = await runner.runOnce({
    language: args.language,
    code,
    network: args.network,
    workspace: args.workspace ? { hostPath: resolve(args.workspace), readOnly: args.readOnly } : undefined,
    limits: {
      ...(args.timeoutSeconds !== undefined ? { timeMs: Math.round(args.timeoutSeconds * 1000) } : {}),
      ...(args.memoryMb !== undefined ? { memoryBytes: Math.round(args.memoryMb * 1024 * 1024) } : {}),
    },
    signal: ctx.signal,
    onStdout: args.json ? undefined : (text) => ctx.stdout.write(text),
    onStderr: args.json ? undefined : (text) => ctx.stderr.write(text),
  });
  if (args.json) {
    ctx.stdout.write(`${JSON.stringify(execution, null, 2)}\n`);
  } else if (
    execution.limit ||
    execution.error?.category === "environment" ||
    execution.status === "cancelled"
  ) {
    ctx.stderr.write(
      `runcell: ${execution.status}${execution.limit ? ` (limit: ${execution.limit})` : ""}: ${execution.error?.value ?? ""}\n`,
    );
  }
  return execExitCode(execution);
}
