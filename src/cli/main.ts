#!/usr/bin/env node
import { type ParseArgsConfig, parseArgs } from "node:util";

type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig["options"]>;

import { createContext } from "./context.js";
import { EXIT, reportError, UsageError } from "./errors.js";

const HELP = `runcell: run code in real Jupyter kernels.

Usage:
  runcell exec [-l python|bash|node] [-t SECONDS] [-m MB] [--network] [--workspace DIR] [--json] (-e CODE | FILE | -)
  runcell run NOTEBOOK.ipynb [-o OUT.ipynb] [--kernel NAME] [--timeout SECONDS] [--allow-errors]
  runcell serve [--host ADDR] [--port N] [--data-dir DIR] [--sandbox bwrap|none] [--config FILE]
  runcell token create --user NAME [--data-dir DIR]
  runcell kernels [--json]
  runcell doctor [--json]
  runcell --version

Run \`runcell COMMAND --help\` for a command's options.`;

const VERSION = "0.1.0";

const HELP_OPTION = { help: { type: "boolean", short: "h" } } as const;

function parse<const O extends ParseArgsOptionsConfig>(args: string[], options: O, help: string) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${help}`);
  }
}

function parseSandboxMode(value: string | undefined): "bwrap" | "none" {
  const mode = value ?? "bwrap";
  if (mode !== "bwrap" && mode !== "none")
    throw new UsageError(`--sandbox takes bwrap or none, not ${JSON.stringify(mode)}`);
  return mode;
}

function printHelp(ctx: { stdout: NodeJS.WritableStream }, text: string): number {
  ctx.stdout.write(`${text}\n`);
  return EXIT.ok;
}

async function dispatch(argv: string[], ctx: ReturnType<typeof createContext>): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "help":
    case "-h":
    case "--help":
      ctx.stdout.write(`${HELP}\n`);
      return command === undefined ? EXIT.usage : EXIT.ok;
    case "--version":
    case "-V":
      ctx.stdout.write(`runcell ${VERSION}\n`);
      return EXIT.ok;
    case "kernels": {
      const { KERNELS_HELP, kernelsCommand } = await import("./commands/kernels.js");
      const { values } = parse(rest, { ...HELP_OPTION, json: { type: "boolean" } }, KERNELS_HELP);
      if (values.help) return printHelp(ctx, KERNELS_HELP);
      return kernelsCommand({ json: Boolean(values.json) }, ctx);
    }
    case "exec": {
      const { EXEC_HELP, execCommand, positiveNumber } = await import("./commands/exec.js");
      const { values, positionals } = parse(
        rest,
        {
          ...HELP_OPTION,
          eval: { type: "string", short: "e" },
          language: { type: "string", short: "l" },
          timeout: { type: "string", short: "t" },
          memory: { type: "string", short: "m" },
          network: { type: "boolean" },
          workspace: { type: "string" },
          "read-only": { type: "boolean" },
          json: { type: "boolean" },
          sandbox: { type: "string" },
        },
        EXEC_HELP,
      );
      if (values.help) return printHelp(ctx, EXEC_HELP);
      if (positionals.length > 1) throw new UsageError(`exec takes at most one FILE\n\n${EXEC_HELP}`);
      const sandbox = parseSandboxMode(values.sandbox);
      return execCommand(
        {
          code: values.eval,
          file: positionals[0],
          language: values.language ?? "python",
          timeoutSeconds: positiveNumber("--timeout", values.timeout, 600),
          memoryMb: positiveNumber("--memory", values.memory, 4096),
          network: Boolean(values.network),
          workspace: values.workspace,
          readOnly: Boolean(values["read-only"]),
          json: Boolean(values.json),
          sandbox,
        },
        ctx,
      );
    }
    case "serve": {
      const { serveCommand, serveHelp } = await import("./commands/serve.js");
      const { values, positionals } = parse(
        rest,
        {
          ...HELP_OPTION,
          host: { type: "string" },
          port: { type: "string", short: "p" },
          "data-dir": { type: "string" },
          sandbox: { type: "string" },
          "pool-size": { type: "string" },
          "log-level": { type: "string" },
          config: { type: "string" },
        },
        "run `runcell serve --help` for the options",
      );
      if (values.help) return printHelp(ctx, serveHelp());
      if (positionals.length > 0) throw new UsageError(`serve takes no arguments\n\n${serveHelp()}`);
      return serveCommand(
        {
          host: values.host,
          port: values.port,
          dataDir: values["data-dir"],
          sandbox: values.sandbox,
          poolSize: values["pool-size"],
          logLevel: values["log-level"],
          config: values.config,
        },
        ctx,
        VERSION,
      );
    }
    case "token": {
      const { TOKEN_HELP, tokenCommand } = await import("./commands/token.js");
      const { values, positionals } = parse(
        rest,
        {
          ...HELP_OPTION,
          user: { type: "string", short: "u" },
          admin: { type: "boolean" },
          "data-dir": { type: "string" },
        },
        TOKEN_HELP,
      );
      if (values.help) return printHelp(ctx, TOKEN_HELP);
      return tokenCommand(
        {
          action: positionals[0],
          tokenId: positionals[1],
          user: values.user,
          admin: Boolean(values.admin),
          dataDir: values["data-dir"],
        },
        ctx,
      );
    }
    case "doctor": {
      const { DOCTOR_HELP, doctorCommand } = await import("./commands/doctor.js");
      const { values, positionals } = parse(rest, { ...HELP_OPTION, json: { type: "boolean" } }, DOCTOR_HELP);
      if (values.help) return printHelp(ctx, DOCTOR_HELP);
      if (positionals.length > 0) throw new UsageError(`doctor takes no arguments\n\n${DOCTOR_HELP}`);
      return doctorCommand({ json: Boolean(values.json) }, ctx);
    }
    case "run": {
      const { parseTimeout, RUN_HELP, runCommand } = await import("./commands/run.js");
      const { positiveNumber } = await import("./commands/exec.js");
      const { values, positionals } = parse(
        rest,
        {
          ...HELP_OPTION,
          output: { type: "string", short: "o" },
          kernel: { type: "string", short: "k" },
          timeout: { type: "string", short: "t" },
          "allow-errors": { type: "boolean" },
          network: { type: "boolean" },
          memory: { type: "string", short: "m" },
          sandbox: { type: "string" },
        },
        RUN_HELP,
      );
      if (values.help) return printHelp(ctx, RUN_HELP);
      if (positionals.length !== 1) throw new UsageError(`run takes exactly one notebook\n\n${RUN_HELP}`);
      return runCommand(
        {
          notebook: positionals[0]!,
          output: values.output,
          kernel: values.kernel,
          timeoutSeconds: parseTimeout(values.timeout),
          allowErrors: Boolean(values["allow-errors"]),
          network: Boolean(values.network),
          memoryMb: positiveNumber("--memory", values.memory, 4096),
          sandbox: parseSandboxMode(values.sandbox),
        },
        ctx,
      );
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}\n\n${HELP}`);
  }
}

async function main(): Promise<void> {
  const controller = new AbortController();
  let ctx: ReturnType<typeof createContext>;
  try {
    ctx = createContext(controller.signal);
  } catch (error) {
    process.exitCode = reportError(error, process.stderr);
    return;
  }
  let interrupts = 0;
  const onSignal = (name: NodeJS.Signals) => {
    // First signal: stop gracefully (kernels shut down). Second: leave now; the exit hook
    // still kills every kernel process group.
    if (++interrupts > 1) process.exit(name === "SIGINT" ? 130 : 143);
    controller.abort(new Error(`interrupted by ${name}`));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let code: number;
  try {
    code = await dispatch(process.argv.slice(2), ctx);
  } catch (error) {
    code = controller.signal.aborted ? 130 : reportError(error, ctx.stderr);
  } finally {
    await ctx.dispose();
  }
  process.exit(code);
}

void main();
