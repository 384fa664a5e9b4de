import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { Execution, ExecutionEvent } from "../execution/types.js";
import { StoreError } from "./errors.js";
import { MIGRATIONS } from "./migrations.js";
import type {
  ExecutionRepository,
  SessionEndReason,
  SessionRepository,
  Store,
  StoredExecution,
  StoredSession,
  TokenInfo,
  TokenRepository,
  UserInfo,
  UserRepository,
} from "./types.js";

/** The database file inside a data dir. */
export const DATABASE_FILE = "runcell.db";

/** How long a token lookup is trusted before the database is asked again (revocations by another process). */
const TOKEN_CACHE_MS = 5_000;
/** `last_used_at` is written at most this often per token: a write per request would cost more than the request. */
const LAST_USED_EVERY_MS = 60_000;

type Row = Record<string, unknown>;

function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

function toUser(row: Row): UserInfo {
  return {
    id: row.id as string,
    name: row.name as string,
    is_admin: row.is_admin === 1,
    created_at: row.created_at as string,
  };
}

function toSession(row: Row): StoredSession {
  return {
    id: row.id as string,
    user_id: row.user_id as string,
    kernel: row.kernel as string,
    mode: row.mode as StoredSession["mode"],
    snapshot: JSON.parse(row.snapshot as string) as Record<string, unknown>,
    created_at: row.created_at as string,
    ended_at: (row.ended_at as string | null) ?? null,
    end_reason: (row.end_reason as SessionEndReason | null) ?? null,
  };
}

/**
 * Opens (creating when missing) the SQLite store of a data dir: WAL mode, foreign keys, the
 * migrations applied in one transaction. Several processes may open the same file (the server
 * and `runcell token create`): WAL lets them read while one writes.
 */
export function openSqliteStore(dataDir: string): Store {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, DATABASE_FILE);
  let db: Database.Database;
  try {
    db = new Database(path);
  } catch (error) {
    throw new StoreError(
      "STORE_OPEN_FAILED",
      `cannot open the database ${path}: ${(error as Error).message} (check the data dir's permissions, or pass another --data-dir)`,
    );
  }
  db.pragma("journal_mode = WAL");
  // NORMAL under WAL: a commit survives a crash of the process; only a power loss may lose the last ones.
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db, path);
  return new SqliteStore(db, dataDir);
}

function migrate(db: Database.Database, path: string): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new StoreError(
      "STORE_TOO_NEW",
      `${path} was written by a newer runcell (schema ${current}, this one knows ${MIGRATIONS.length}): upgrade runcell`,
    );
  }
  if (current === MIGRATIONS.length) return;
  db.transaction(() => {
    for (let version = current; version < MIGRATIONS.length; version++) db.exec(MIGRATIONS[version]!);
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

class SqliteStore implements Store {
  readonly users: UserRepository;
  readonly tokens: TokenRepository;
  readonly sessions: SessionRepository;
  readonly executions: ExecutionRepository;
  readonly dataDir: string;
  readonly #db: Database.Database;

  constructor(db: Database.Database, dataDir: string) {
    this.#db = db;
    this.dataDir = dataDir;
    this.users = new SqliteUsers(db);
    this.tokens = new SqliteTokens(db, this.users);
    this.sessions = new SqliteSessions(db);
    this.executions = new SqliteExecutions(db);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

class SqliteUsers implements UserRepository {
  readonly #byName: Database.Statement;
  readonly #byId: Database.Statement;
  readonly #insert: Database.Statement;
  readonly #count: Database.Statement;

  constructor(db: Database.Database) {
    this.#byName = db.prepare("SELECT * FROM users WHERE name = ?");
    this.#byId = db.prepare("SELECT * FROM users WHERE id = ?");
    this.#insert = db.prepare(
      "INSERT INTO users (id, name, is_admin, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
    );
    this.#count = db.prepare("SELECT count(*) AS n FROM users");
  }

  ensure(name: string, options: { admin?: boolean } = {}): UserInfo {
    this.#insert.run(randomUUID(), name, options.admin ? 1 : 0, new Date().toISOString());
    return toUser(this.#byName.get(name) as Row);
  }

  byId(id: string): UserInfo | undefined {
    const row = this.#byId.get(id) as Row | undefined;
    return row ? toUser(row) : undefined;
  }

  count(): number {
    return (this.#count.get() as { n: number }).n;
  }
}

class SqliteTokens implements TokenRepository {
  readonly #users: UserRepository;
  readonly #insert: Database.Statement;
  readonly #byHash: Database.Statement;
  readonly #touch: Database.Statement;
  readonly #list: Database.Statement;
  readonly #delete: Database.Statement;
  /** hash → user and when the lookup was made; bounded by the number of live tokens in use. */
  readonly #cache = new Map<string, { user: UserInfo; tokenId: string; at: number; touchedAt: number }>();

  constructor(db: Database.Database, users: UserRepository) {
    this.#users = users;
    this.#insert = db.prepare(
      "INSERT INTO tokens (id, user_id, hash, prefix, created_at) VALUES (@id, @user_id, @hash, @prefix, @created_at)",
    );
    this.#byHash = db.prepare("SELECT id, user_id FROM tokens WHERE hash = ?");
    this.#touch = db.prepare("UPDATE tokens SET last_used_at = ? WHERE id = ?");
    this.#list = db.prepare(
      "SELECT id, user_id, prefix, created_at, last_used_at FROM tokens WHERE user_id = ? ORDER BY created_at",
    );
    this.#delete = db.prepare("DELETE FROM tokens WHERE id = ? AND user_id = ?");
  }

  create(userId: string): { token: string; info: TokenInfo } {
    const token = `rc_${randomBytes(32).toString("base64url")}`;
    const info: TokenInfo = {
      id: randomUUID(),
      user_id: userId,
      prefix: token.slice(0, 10),
      created_at: new Date().toISOString(),
      last_used_at: null,
    };
    this.#insert.run({ ...info, hash: hashToken(token) });
    return { token, info };
  }

  authenticate(token: string): UserInfo | undefined {
    // Only well-formed tokens reach the database; a garbage header costs nothing.
    if (!/^rc_[A-Za-z0-9_-]{43}$/.test(token)) return undefined;
    const hash = hashToken(token);
    const now = Date.now();
    const cached = this.#cache.get(hash);
    if (cached && now - cached.at < TOKEN_CACHE_MS) {
      this.#maybeTouch(cached, now);
      return cached.user;
    }
    const row = this.#byHash.get(hash) as { id: string; user_id: string } | undefined;
    if (!row) {
      this.#cache.delete(hash);
      return undefined;
    }
    const user = this.#users.byId(row.user_id);
    if (!user) return undefined;
    if (this.#cache.size > 10_000) this.#cache.clear();
    const entry = { user, tokenId: row.id, at: now, touchedAt: cached?.touchedAt ?? 0 };
    this.#cache.set(hash, entry);
    this.#maybeTouch(entry, now);
    return user;
  }

  #maybeTouch(entry: { tokenId: string; touchedAt: number }, now: number): void {
    if (now - entry.touchedAt < LAST_USED_EVERY_MS) return;
    entry.touchedAt = now;
    this.#touch.run(new Date(now).toISOString(), entry.tokenId);
  }

  list(userId: string): TokenInfo[] {
    return this.#list.all(userId) as TokenInfo[];
  }

  revoke(userId: string, tokenId: string): boolean {
    const deleted = this.#delete.run(tokenId, userId).changes > 0;
    if (deleted) this.#cache.clear();
    return deleted;
  }
}

class SqliteSessions implements SessionRepository {
  readonly #insert: Database.Statement;
  readonly #get: Database.Statement;
  readonly #live: Database.Statement;
  readonly #endLive: Database.Statement;
  readonly #db: Database.Database;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#insert = db.prepare(
      "INSERT INTO sessions (id, user_id, kernel, mode, snapshot, created_at, ended_at, end_reason) " +
        "VALUES (@id, @user_id, @kernel, @mode, @snapshot, @created_at, @ended_at, @end_reason)",
    );
    this.#get = db.prepare("SELECT * FROM sessions WHERE id = ?");
    this.#live = db.prepare("SELECT * FROM sessions WHERE ended_at IS NULL ORDER BY created_at");
    this.#endLive = db.prepare("UPDATE sessions SET ended_at = ?, end_reason = ? WHERE ended_at IS NULL");
  }

  insert(session: StoredSession): void {
    this.#insert.run({ ...session, snapshot: JSON.stringify(session.snapshot) });
  }

  update(id: string, fields: Partial<Pick<StoredSession, "snapshot" | "ended_at" | "end_reason">>): void {
    const sets: string[] = [];
    const values: Record<string, unknown> = { id };
    if (fields.snapshot !== undefined) {
      sets.push("snapshot = @snapshot");
      values.snapshot = JSON.stringify(fields.snapshot);
    }
    if (fields.ended_at !== undefined) {
      sets.push("ended_at = @ended_at");
      values.ended_at = fields.ended_at;
    }
    if (fields.end_reason !== undefined) {
      sets.push("end_reason = @end_reason");
      values.end_reason = fields.end_reason;
    }
    if (sets.length === 0) return;
    this.#db.prepare(`UPDATE sessions SET ${sets.join(", ")} WHERE id = @id`).run(values);
  }

  get(id: string): StoredSession | undefined {
    const row = this.#get.get(id) as Row | undefined;
    return row ? toSession(row) : undefined;
  }

  listLive(): StoredSession[] {
    return (this.#live.all() as Row[]).map(toSession);
  }

  endAllLive(reason: SessionEndReason, at: string): number {
    return this.#endLive.run(at, reason).changes;
  }
}

class SqliteExecutions implements ExecutionRepository {
  readonly #save: Database.Statement;
  readonly #get: Database.Statement;
  readonly #bySession: Database.Statement;
  readonly #unfinished: Database.Statement;
  readonly #db: Database.Database;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#save = db.prepare(
      "INSERT INTO executions (id, user_id, session_id, block_id, status, created_at, record, events) " +
        "VALUES (@id, @user_id, @session_id, @block_id, @status, @created_at, @record, @events) " +
        "ON CONFLICT(id) DO UPDATE SET status = excluded.status, record = excluded.record, " +
        "events = coalesce(excluded.events, executions.events)",
    );
    this.#get = db.prepare("SELECT user_id, record, events FROM executions WHERE id = ?");
    this.#bySession = db.prepare(
      "SELECT record FROM executions WHERE session_id = ? ORDER BY created_at, rowid LIMIT ?",
    );
    this.#unfinished = db.prepare("SELECT id, record FROM executions WHERE status IN ('queued', 'running')");
  }

  save(userId: string, execution: Execution, events?: ExecutionEvent[]): void {
    this.#save.run({
      id: execution.id,
      user_id: userId,
      session_id: execution.session_id,
      block_id: execution.block_id,
      status: execution.status,
      created_at: execution.created_at,
      record: JSON.stringify(execution),
      events: events ? JSON.stringify(events) : null,
    });
  }

  get(id: string): StoredExecution | undefined {
    const row = this.#get.get(id) as { user_id: string; record: string; events: string | null } | undefined;
    if (!row) return undefined;
    return {
      user_id: row.user_id,
      execution: JSON.parse(row.record) as Execution,
      events: row.events === null ? null : (JSON.parse(row.events) as ExecutionEvent[]),
    };
  }

  listBySession(sessionId: string, options: { limit?: number } = {}): Execution[] {
    const rows = this.#bySession.all(sessionId, options.limit ?? 1000) as Array<{ record: string }>;
    return rows.map((row) => JSON.parse(row.record) as Execution);
  }

  failUnfinished(reason: string, at: string): number {
    const rows = this.#unfinished.all() as Array<{ id: string; record: string }>;
    const update = this.#db.prepare("UPDATE executions SET status = 'failed', record = ? WHERE id = ?");
    this.#db.transaction(() => {
      for (const row of rows) {
        const record = JSON.parse(row.record) as Execution;
        record.status = "failed";
        record.error = { name: "ServerStopped", value: reason, traceback: [], category: "environment" };
        record.finished_at = at;
        if (record.started_at) record.duration_ms = Date.parse(at) - Date.parse(record.started_at);
        update.run(JSON.stringify(record), row.id);
      }
    })();
    return rows.length;
  }
}
