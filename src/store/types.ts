import type { Execution, ExecutionEvent } from "../execution/types.js";

/** A person or program that holds tokens and owns sessions and executions. */
export interface UserInfo {
  id: string;
  name: string;
  is_admin: boolean;
  created_at: string;
}

/** A bearer token's stored facts; the token itself is never stored, only its SHA-256. */
export interface TokenInfo {
  id: string;
  user_id: string;
  /** The first characters of the token, so a user can tell tokens apart in a listing. */
  prefix: string;
  created_at: string;
  last_used_at: string | null;
}

/** How a session ended; null while it lives. */
export type SessionEndReason =
  | "deleted"
  | "culled"
  | "kernel_stopped"
  | "startup_failed"
  | "server_shutdown"
  | "server_restarted"
  | "kernel_failed";

/** What the store keeps of a session (its live state lives in sessions/). */
export interface StoredSession {
  id: string;
  user_id: string;
  kernel: string;
  mode: "read_only" | "write_access";
  /** The session as last presented to its owner (JSON), so an ended session reads as it was. */
  snapshot: Record<string, unknown>;
  created_at: string;
  ended_at: string | null;
  end_reason: SessionEndReason | null;
}

export interface UserRepository {
  /** The user named `name`, created (non-admin unless asked) when missing. */
  ensure(name: string, options?: { admin?: boolean }): UserInfo;
  byId(id: string): UserInfo | undefined;
  count(): number;
}

export interface TokenRepository {
  /** Stores a new token for the user and returns its secret (shown once, never stored). */
  create(userId: string): { token: string; info: TokenInfo };
  /** The user a presented token belongs to, or undefined. */
  authenticate(token: string): UserInfo | undefined;
  list(userId: string): TokenInfo[];
  /** Deletes a token by id; true when one was deleted. */
  revoke(userId: string, tokenId: string): boolean;
}

export interface SessionRepository {
  insert(session: StoredSession): void;
  update(id: string, fields: Partial<Pick<StoredSession, "snapshot" | "ended_at" | "end_reason">>): void;
  get(id: string): StoredSession | undefined;
  /** Sessions still marked live, e.g. left by a server that died; `endAll` closes them. */
  listLive(): StoredSession[];
  endAllLive(reason: SessionEndReason, at: string): number;
}

/** An execution with its owner, as stored. */
export interface StoredExecution {
  user_id: string;
  execution: Execution;
  /** Every event of the execution in order, kept when it finishes so replay stays exact. */
  events: ExecutionEvent[] | null;
}

export interface ExecutionRepository {
  /** Writes (insert or replace) the record; `events` only once it is finished. */
  save(userId: string, execution: Execution, events?: ExecutionEvent[]): void;
  get(id: string): StoredExecution | undefined;
  /** Executions of a session, oldest first. */
  listBySession(sessionId: string, options?: { limit?: number }): Execution[];
  /** Executions of a block, newest first. */
  listByBlock(blockId: string, options?: { limit?: number }): Execution[];
  /**
   * Closes every execution still queued or running (left by a server that died) as failed
   * with `reason`; returns how many.
   */
  failUnfinished(reason: string, at: string): number;
}

/** A notebook project: blocks run in order in one kernel. */
export interface ProjectInfo {
  id: string;
  user_id: string;
  name: string;
  kernel: string;
  metadata: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

/** Block status, upper case as notebook users expect. */
export type BlockStatus = "IDLE" | "RUNNING" | "COMPLETED" | "FAILED" | "STALE";

/** A block (a notebook cell) as stored. */
export interface BlockRecord {
  id: string;
  project_id: string;
  /** 0-based index in the project, without gaps. */
  position: number;
  cell_type: "code" | "markdown" | "raw";
  language: string;
  source: string;
  status: BlockStatus;
  /** Why the status is what it is, when that is not obvious (stale: which block changed). */
  status_reason: string | null;
  defines: string[];
  uses: string[];
  /** Why the block's definitions could not be analysed (a syntax error), else null. */
  analysis_error: string | null;
  last_execution_id: string | null;
  /** The source of the block's last run, to tell an edit-and-rerun from a plain rerun. */
  last_run_source: string | null;
  execution_count: number | null;
  metadata: Record<string, unknown>;
  attachments: Record<string, unknown> | null;
  /** Outputs that came with an imported notebook, shown until the block runs here. */
  imported_outputs: Record<string, unknown>[] | null;
  created_at: string;
  updated_at: string;
}

export interface ProjectRepository {
  insert(project: ProjectInfo): void;
  update(id: string, fields: Partial<Pick<ProjectInfo, "name" | "kernel" | "metadata">>): void;
  get(id: string): ProjectInfo | undefined;
  list(userId: string): ProjectInfo[];
  delete(id: string): void;
}

export interface BlockRepository {
  /** Inserts at `block.position` (clamped to the end), shifting the blocks at and after it. */
  insert(block: BlockRecord): BlockRecord;
  /** Writes the given fields (not the position: see move). */
  update(
    id: string,
    fields: Partial<Omit<BlockRecord, "id" | "project_id" | "position" | "created_at">>,
  ): void;
  /** Moves a block to `position` (clamped), renumbering the others. */
  move(id: string, position: number): void;
  get(id: string): BlockRecord | undefined;
  list(projectId: string): BlockRecord[];
  delete(id: string): void;
  /** Blocks left RUNNING by a server that died become FAILED with `reason`; returns how many. */
  failRunning(reason: string): number;
}

/** The whole store: one object that owns the database and its repositories. */
export interface Store {
  readonly users: UserRepository;
  readonly tokens: TokenRepository;
  readonly sessions: SessionRepository;
  readonly executions: ExecutionRepository;
  readonly projects: ProjectRepository;
  readonly blocks: BlockRepository;
  /** Where the store keeps its files. */
  readonly dataDir: string;
  close(): void;
}
