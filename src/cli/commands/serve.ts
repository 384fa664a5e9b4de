import { loadServerConfig, serverOptions } from "../../config/server-config.js";
import { setSpawnStrategy } from "../../sandbox/managed-process.js";
import { startServer } from "../../server/runtime.js";
import type { CliContext } from "../context.js";
import { EXIT } from "../errors.js";

/** The help text, with every option of the configuration schema, its variable and its default. */
export function serveHelp(): string {
  const lines = serverOptions().map((o) => {
    const value = o.default === undefined ? "" : ` (default ${JSON.stringify(o.default)})`;
    return `  ${o.path.padEnd(28)} ${o.env}\n      ${o.description}${value}`;
  });
  return `Usage: runcell serve [--host ADDR] [--port N] [--data-dir DIR] [--sandbox bwrap|none] [--pool-size N]
                     [--log-level LEVEL] [--config FILE]

Starts the HTTP + WebSocket API: sessions (stateful kernels in sandboxes), one-shot runs,
executions stored in SQLite in the data dir. On an empty data dir it creates the user "admin"
and prints its token once; make more with \`runcell token create --user NAME\`.
SIGTERM or Ctrl-C stops it gracefully (every kernel is stopped).

Every option can be set in a JSON config file (--config FILE, or DATA_DIR/config.json; nested
as {"sessions": {"max_per_user": 5}}), by its RUNCELL_* variable, or for some by a flag.
Flags beat variables, which beat the file.

Options (file path, variable):
${lines.join("\n")}`;
}

export interface ServeArgs {
  host?: string;
  port?: string;
  dataDir?: string;
  sandbox?: string;
  poolSize?: string;
  logLevel?: string;
  config?: string;
}

/** `runcell serve`: runs the API until SIGINT/SIGTERM, then shuts down gracefully. */
export async function serveCommand(args: ServeArgs, ctx: CliContext, version: string): Promise<number> {
  const config = loadServerConfig(
    {
      host: args.host,
      port: args.port,
      data_dir: args.dataDir,
      sandbox: args.sandbox,
      log_level: args.logLevel,
      "pool.size": args.poolSize,
    },
    process.env,
    args.config,
  );
  // A long-lived server grows: children are started by the spawn helper, whose fork stays cheap.
  setSpawnStrategy("helper");
  const server = await startServer(config, {
    version,
    logger: { level: config.log_level },
    notice: (line) => ctx.stderr.write(`runcell: ${line}\n`),
  });
  ctx.stderr.write(
    `runcell: serving on ${server.url} (data in ${config.data_dir}, sandbox ${config.sandbox})\n`,
  );
  ctx.stderr.write(`runcell: API reference at ${server.url}/api/v1/docs\n`);
  if (config.sandbox === "none") {
    ctx.stderr.write(
      "runcell: warning: --sandbox none runs every kernel and run unconfined, with this user's rights\n",
    );
  }
  if (server.adminToken) {
    ctx.stderr.write(
      `runcell: created user "admin"; its token (shown once, stored hashed):\n` +
        `runcell: admin token: ${server.adminToken}\n` +
        `runcell: try: curl -H "Authorization: Bearer ${server.adminToken}" ${server.url}/api/v1/sessions\n` +
        `runcell:  or: ${server.url}/?token=${server.adminToken}\n`,
    );
  }
  await new Promise<void>((resolve) => {
    if (ctx.signal.aborted) return resolve();
    ctx.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  ctx.stderr.write("runcell: shutting down: stopping sessions and kernels\n");
  await server.close();
  ctx.stderr.write("runcell: stopped\n");
  return EXIT.ok;
}
