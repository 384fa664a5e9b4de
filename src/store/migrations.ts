/**
 * Versioned schema migrations, applied in order at open; `PRAGMA user_version` records the last
 * one applied. Never edit a released migration: add the next one.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: users, tokens, sessions, executions.
  `
  CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
  );
  CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT
  );
  CREATE INDEX tokens_user ON tokens(user_id);
  CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    kernel TEXT NOT NULL,
    mode TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    created_at TEXT NOT NULL,
    ended_at TEXT,
    end_reason TEXT
  );
  CREATE INDEX sessions_live ON sessions(ended_at) WHERE ended_at IS NULL;
  CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    session_id TEXT,
    block_id TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    record TEXT NOT NULL,
    events TEXT
  );
  CREATE INDEX executions_session ON executions(session_id, created_at);
  CREATE INDEX executions_block ON executions(block_id, created_at);
  CREATE INDEX executions_unfinished ON executions(status) WHERE status IN ('queued', 'running');
  `,
  // 2: notebook projects and blocks.
  `
  CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    kernel TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE INDEX projects_user ON projects(user_id, created_at);
  CREATE TABLE blocks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    cell_type TEXT NOT NULL,
    language TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    defines TEXT NOT NULL DEFAULT '[]',
    uses TEXT NOT NULL DEFAULT '[]',
    analysis_error TEXT,
    last_execution_id TEXT,
    last_run_source TEXT,
    execution_count INTEGER,
    metadata TEXT NOT NULL DEFAULT '{}',
    attachments TEXT,
    imported_outputs TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE INDEX blocks_project ON blocks(project_id, position);
  `,
];
