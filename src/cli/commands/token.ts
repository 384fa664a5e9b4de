import { defaultDataDir } from "../../config/server-config.js";
import { openSqliteStore } from "../../store/sqlite-store.js";
import type { CliContext } from "../context.js";
import { EXIT, UsageError } from "../errors.js";

export const TOKEN_HELP = `Usage: runcell token create --user NAME [--admin] [--data-dir DIR]
       runcell token list   --user NAME [--data-dir DIR]
       runcell token revoke --user NAME TOKEN_ID [--data-dir DIR]

Manages the bearer tokens of the API's users, in the data dir's database (default
$RUNCELL_DATA_DIR, else $XDG_DATA_HOME/runcell). \`create\` makes the user when missing and prints
a new token on stdout: it is shown once and stored hashed. A running server accepts it at once.`;

export interface TokenArgs {
  action: string | undefined;
  user?: string;
  admin: boolean;
  dataDir?: string;
  tokenId?: string;
}

/** `runcell token create|list|revoke`. */
export async function tokenCommand(args: TokenArgs, ctx: CliContext): Promise<number> {
  if (!args.user || !/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(args.user)) {
    throw new UsageError(`--user takes a name of letters, digits and . _ @ - (up to 64)\n\n${TOKEN_HELP}`);
  }
  const dataDir = args.dataDir ?? (process.env.RUNCELL_DATA_DIR || defaultDataDir(process.env));
  const store = openSqliteStore(dataDir);
  try {
    switch (args.action) {
      case "create": {
        const user = store.users.ensure(args.user, { admin: args.admin });
        const { token } = store.tokens.create(user.id);
        ctx.stdout.write(`${token}\n`);
        return EXIT.ok;
      }
      case "list": {
        const user = store.users.ensure(args.user);
        for (const t of store.tokens.list(user.id)) {
          ctx.stdout.write(
            `${t.id}  ${t.prefix}…  created ${t.created_at}  last used ${t.last_used_at ?? "never"}\n`,
          );
        }
        return EXIT.ok;
      }
      case "revoke": {
        if (!args.tokenId)
          throw new UsageError(`revoke takes the TOKEN_ID shown by \`token list\`\n\n${TOKEN_HELP}`);
        const user = store.users.ensure(args.user);
        if (!store.tokens.revoke(user.id, args.tokenId)) {
          throw new UsageError(`user ${args.user} has no token ${args.tokenId}`);
        }
        ctx.stdout.write(`revoked ${args.tokenId}\n`);
        return EXIT.ok;
      }
      default:
        throw new UsageError(`token takes create, list or revoke\n\n${TOKEN_HELP}`);
    }
  } finally {
    store.close();
  }
}
