import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { Execution, ExecutionEvent } from "../execution/types.js";
import { ArtifactFiles } from "./artifacts.js";
import { StoreError } from "./errors.js";
import { MIGRATIONS } from "./migrations.js";
import type {
  BlockRecord,
  BlockRepository,
  ExecutionRepository,
  ProjectInfo,
  ProjectRepository,
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

/**
 * `UPDATE table SET …` of the given fields (undefined ones left as they are), the `jsonFields`
 * stored as JSON text. Field names come from typed records, checked again as plain identifiers.
 */
function updateRow(
  db: Database.Database,
  table: string,
  id: string,
  fields: Record<string, unknown>,
  jsonFields: readonly string[] = [],
): void {
  const sets: string[] = [];
  const values: Record<string, unknown> = { id };
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    if (!/^[a-z_]+$/.test(key)) throw new Error(`not a ${table} field: ${key}`);
    sets.push(`${key} = @${key}`);
    values[key] = jsonFields.includes(key) && value !== null ? JSON.stringify(value) : value;
  }
  if (sets.length > 0) db.prepare(`UPDATE ${table} SET ${sets.join(", ")} WHERE id = @id`).run(values);
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
  readonly projects: ProjectRepository;
  readonly blocks: BlockRepository;
  readonly dataDir: string;
  readonly #db: Database.Database;

  constructor(db: Database.Database, dataDir: string) {
    this.#db = db;
    this.dataDir = dataDir;
    this.users = new SqliteUsers(db);
    this.tokens = new SqliteTokens(db, this.users);
    this.sessions = new SqliteSessions(db);
    this.executions = new SqliteExecutions(db, new ArtifactFiles(dataDir));
    this.projects = new SqliteProjects(db);
    this.blocks = new SqliteBlocks(db);
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
    updateRow(this.#db, "sessions", id, fields, ["snapshot"]);
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
  readonly #byBlock: Database.Statement;
  readonly #db: Database.Database;
  readonly #artifacts: ArtifactFiles;

  constructor(db: Database.Database, artifacts: ArtifactFiles) {
    this.#db = db;
    this.#artifacts = artifacts;
    this.#byBlock = db.prepare(
      "SELECT record FROM executions WHERE block_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
    );
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
      record: JSON.stringify(this.#artifacts.externalizeExecution(execution)),
      events: events ? JSON.stringify(this.#artifacts.externalizeEvents(events)) : null,
    });
  }

  get(id: string): StoredExecution | undefined {
    const row = this.#get.get(id) as { user_id: string; record: string; events: string | null } | undefined;
    if (!row) return undefined;
    return {
      user_id: row.user_id,
      execution: this.#artifacts.internalizeExecution(JSON.parse(row.record) as Execution),
      events:
        row.events === null
          ? null
          : this.#artifacts.internalizeEvents(JSON.parse(row.events) as ExecutionEvent[]),
    };
  }

  listBySession(sessionId: string, options: { limit?: number } = {}): Execution[] {
    const rows = this.#bySession.all(sessionId, options.limit ?? 1000) as Array<{ record: string }>;
    return rows.map((row) => this.#artifacts.internalizeExecution(JSON.parse(row.record) as Execution));
  }

  listByBlock(blockId: string, options: { limit?: number } = {}): Execution[] {
    const rows = this.#byBlock.all(blockId, options.limit ?? 100) as Array<{ record: string }>;
    return rows.map((row) => this.#artifacts.internalizeExecution(JSON.parse(row.record) as Execution));
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

function toProject(row: Row): ProjectInfo {
  return {
    ...(row as unknown as ProjectInfo),
    metadata: JSON.parse(row.metadata as string) as Record<string, unknown>,
  };
}

class SqliteProjects implements ProjectRepository {
  readonly #db: Database.Database;
  readonly #get: Database.Statement;
  readonly #list: Database.Statement;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#get = db.prepare("SELECT * FROM projects WHERE id = ?");
    this.#list = db.prepare("SELECT * FROM projects WHERE user_id = ? ORDER BY created_at, rowid");
  }

  insert(project: ProjectInfo): void {
    this.#db
      .prepare(
        "INSERT INTO projects (id, user_id, name, kernel, metadata, created_at, updated_at) " +
          "VALUES (@id, @user_id, @name, @kernel, @metadata, @created_at, @updated_at)",
      )
      .run({ ...project, metadata: JSON.stringify(project.metadata) });
  }

  update(id: string, fields: Partial<Pick<ProjectInfo, "name" | "kernel" | "metadata">>): void {
    updateRow(this.#db, "projects", id, { ...fields, updated_at: new Date().toISOString() }, ["metadata"]);
  }

  get(id: string): ProjectInfo | undefined {
    const row = this.#get.get(id) as Row | undefined;
    return row ? toProject(row) : undefined;
  }

  list(userId: string): ProjectInfo[] {
    return (this.#list.all(userId) as Row[]).map(toProject);
  }

  delete(id: string): void {
    this.#db.prepare("DELETE FROM projects WHERE id = ?").run(id);
  }
}

const BLOCK_JSON_FIELDS = ["defines", "uses", "metadata", "attachments", "imported_outputs"] as const;

function toBlock(row: Row): BlockRecord {
  const block = { ...row } as Record<string, unknown>;
  for (const key of BLOCK_JSON_FIELDS) {
    const raw = row[key];
    block[key] = raw === null || raw === undefined ? null : JSON.parse(raw as string);
  }
  return block as unknown as BlockRecord;
}

class SqliteBlocks implements BlockRepository {
  readonly #db: Database.Database;
  readonly #get: Database.Statement;
  readonly #list: Database.Statement;
  readonly #count: Database.Statement;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#get = db.prepare("SELECT * FROM blocks WHERE id = ?");
    this.#list = db.prepare("SELECT * FROM blocks WHERE project_id = ? ORDER BY position");
    this.#count = db.prepare("SELECT count(*) AS n FROM blocks WHERE project_id = ?");
  }

  insert(block: BlockRecord): BlockRecord {
    return this.#db
      .transaction(() => {
        const count = (this.#count.get(block.project_id) as { n: number }).n;
        const position = Math.max(0, Math.min(block.position, count));
        this.#db
          .prepare("UPDATE blocks SET position = position + 1 WHERE project_id = ? AND position >= ?")
          .run(block.project_id, position);
        const row: Record<string, unknown> = { ...block, position };
        for (const key of BLOCK_JSON_FIELDS)
          row[key] = block[key] === null ? null : JSON.stringify(block[key]);
        this.#db
          .prepare(
            `INSERT INTO blocks (${Object.keys(row).join(", ")}) VALUES (${Object.keys(row)
              .map((k) => `@${k}`)
              .join(", ")})`,
          )
          .run(row);
        return { ...block, position };
      })
      .immediate();
  }

  update(
    id: string,
    fields: Partial<Omit<BlockRecord, "id" | "project_id" | "position" | "created_at">>,
  ): void {
    updateRow(
      this.#db,
      "blocks",
      id,
      { ...fields, updated_at: fields.updated_at ?? new Date().toISOString() },
      BLOCK_JSON_FIELDS,
    );
  }

  move(id: string, position: number): void {
    this.#db
      .transaction(() => {
        const block = this.get(id);
        if (!block) return;
        const ids = this.list(block.project_id)
          .map((b) => b.id)
          .filter((other) => other !== id);
        ids.splice(Math.max(0, Math.min(position, ids.length)), 0, id);
        const set = this.#db.prepare("UPDATE blocks SET position = ? WHERE id = ?");
        ids.forEach((blockId, index) => set.run(index, blockId));
      })
      .immediate();
  }

  get(id: string): BlockRecord | undefined {
    const row = this.#get.get(id) as Row | undefined;
    return row ? toBlock(row) : undefined;
  }

  list(projectId: string): BlockRecord[] {
    return (this.#list.all(projectId) as Row[]).map(toBlock);
  }

  delete(id: string): void {
    this.#db
      .transaction(() => {
        const block = this.get(id);
        if (!block) return;
        this.#db.prepare("DELETE FROM blocks WHERE id = ?").run(id);
        this.#db
          .prepare("UPDATE blocks SET position = position - 1 WHERE project_id = ? AND position > ?")
          .run(block.project_id, block.position);
      })
      .immediate();
  }

  failRunning(reason: string): number {
    return this.#db
      .prepare(
        "UPDATE blocks SET status = 'FAILED', status_reason = ?, updated_at = ? WHERE status = 'RUNNING'",
      )
      .run(reason, new Date().toISOString()).changes;
  }
}
