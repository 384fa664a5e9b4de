import { randomUUID } from "node:crypto";
import { InvalidArgumentError, NotFoundError } from "../errors.js";
import type { Execution } from "../execution/types.js";
import type { Session } from "../sessions/session.js";
import type { SessionManager } from "../sessions/session-manager.js";
import type { BlockRecord, BlockStatus, ProjectInfo, Store } from "../store/types.js";
import type { PythonAnalyzer } from "./def-use.js";
import { NotebookConflictError } from "./errors.js";
import type { Notebook } from "./ipynb.js";
import { type ContextOptions, renderContext } from "./llm-context.js";
import { notebookToBlocks, projectToNotebook } from "./project-ipynb.js";
import { notebookKernelName } from "./run-notebook.js";
import { type BlockDeps, dependentsOf, upstreamOf } from "./staleness.js";

/** A block as the API shows it. */
export type BlockInfo = Omit<
  BlockRecord,
  "last_run_source" | "imported_outputs" | "attachments" | "metadata"
> & {
  metadata: Record<string, unknown>;
};

/** A project as the API shows it, with its kernel session when one runs. */
export type ProjectView = Omit<ProjectInfo, "user_id"> & { session_id: string | null; block_count: number };

/** What running one block did. */
export interface BlockRunResult {
  block_id: string;
  /** `not_run`: skipped after an earlier failure, or because an upstream block it needed failed. */
  status: "completed" | "failed" | "not_run";
  execution: Execution | null;
  /** Blocks re-run first to rebuild the state this one needs (its kernel was new or had lost its state). */
  rebuilt: Array<{ block_id: string; execution_id: string; status: Execution["status"] }>;
  reason?: string;
}

export interface NotebookServiceOptions {
  store: Store;
  sessions: SessionManager;
  analyzer: PythonAnalyzer;
}

const BLOCK_LANGUAGES = new Set(["python"]);

/**
 * Projects of blocks run in one kernel session per project, with block statuses, the history of
 * every run, dependency-aware STALE marking, and rebuilding of a lost kernel state from the
 * upstream blocks. Work on one project is serialized (a run, an edit, a reorder), so statuses
 * always describe what the kernel saw.
 */
export class NotebookService {
  readonly #options: NotebookServiceOptions;
  /** Per project: the session running its kernel, and the kernel generation its blocks ran in. */
  readonly #kernels = new Map<string, { sessionId: string; restarts: number }>();
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(options: NotebookServiceOptions) {
    this.#options = options;
  }

  get #store(): Store {
    return this.#options.store;
  }

  /** Runs `work` after every earlier operation on the project has finished. */
  #serialize<T>(projectId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(projectId) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.catch(() => undefined);
    this.#locks.set(projectId, settled);
    void settled.then(() => {
      if (this.#locks.get(projectId) === settled) this.#locks.delete(projectId);
    });
    return next;
  }

  // ---- projects ---------------------------------------------------------------------------

  project(userId: string, id: string): ProjectInfo {
    const project = this.#store.projects.get(id);
    if (!project || project.user_id !== userId) {
      throw new NotFoundError("PROJECT_NOT_FOUND", `no project ${id} (GET /api/v1/projects lists yours)`);
    }
    return project;
  }

  view(project: ProjectInfo): ProjectView {
    const { user_id: _owner, ...rest } = project;
    return {
      ...rest,
      session_id: this.#liveSession(project)?.id ?? null,
      block_count: this.#store.blocks.list(project.id).length,
    };
  }

  async createProject(userId: string, input: { name: string; kernel?: string }): Promise<ProjectInfo> {
    const kernel = input.kernel ?? "python3";
    await this.#checkKernel(kernel);
    const now = new Date().toISOString();
    const project: ProjectInfo = {
      id: randomUUID(),
      user_id: userId,
      name: input.name,
      kernel,
      metadata: {},
      created_at: now,
      updated_at: now,
    };
    this.#store.projects.insert(project);
    return project;
  }

  listProjects(userId: string): ProjectInfo[] {
    return this.#store.projects.list(userId);
  }

  async updateProject(
    userId: string,
    id: string,
    input: { name?: string; kernel?: string },
  ): Promise<ProjectInfo> {
    const project = this.project(userId, id);
    if (input.kernel !== undefined && input.kernel !== project.kernel) {
      await this.#checkKernel(input.kernel);
      // Another kernel: the old one's state means nothing to it.
      await this.#endSession(project);
    }
    this.#store.projects.update(id, input);
    return this.project(userId, id);
  }

  async deleteProject(userId: string, id: string): Promise<void> {
    const project = this.project(userId, id);
    await this.#serialize(id, async () => {
      await this.#endSession(project);
      this.#store.projects.delete(id);
    });
  }

  async #checkKernel(kernel: string): Promise<void> {
    try {
      await this.#options.sessions.kernelspec(kernel);
    } catch (error) {
      if (error instanceof NotFoundError) throw new InvalidArgumentError("UNKNOWN_KERNEL", error.message);
      throw error;
    }
  }

  // ---- blocks -----------------------------------------------------------------------------

  block(userId: string, id: string): { block: BlockRecord; project: ProjectInfo } {
    const block = this.#store.blocks.get(id);
    const project = block ? this.#store.projects.get(block.project_id) : undefined;
    if (!block || !project || project.user_id !== userId) {
      throw new NotFoundError(
        "BLOCK_NOT_FOUND",
        `no block ${id} (GET /api/v1/projects/{id}/blocks lists a project's)`,
      );
    }
    return { block, project };
  }

  blockInfo(block: BlockRecord): BlockInfo {
    const {
      last_run_source: _lastRun,
      imported_outputs: _imported,
      attachments: _attachments,
      ...rest
    } = block;
    return rest;
  }

  listBlocks(userId: string, projectId: string): BlockRecord[] {
    this.project(userId, projectId);
    return this.#store.blocks.list(projectId);
  }

  async createBlock(
    userId: string,
    projectId: string,
    input: {
      source?: string;
      language?: string;
      cell_type?: BlockRecord["cell_type"];
      position?: number;
      metadata?: Record<string, unknown>;
      attachments?: Record<string, unknown> | null;
      imported_outputs?: Record<string, unknown>[] | null;
      execution_count?: number | null;
    },
  ): Promise<BlockRecord> {
    this.project(userId, projectId);
    const language = input.language ?? "python";
    if (!BLOCK_LANGUAGES.has(language)) {
      throw new InvalidArgumentError(
        "UNKNOWN_LANGUAGE",
        `blocks run python (the project's kernel), not ${JSON.stringify(language)}`,
      );
    }
    const cellType = input.cell_type ?? "code";
    const source = input.source ?? "";
    const analysis = cellType === "code" ? await this.#options.analyzer.analyze(source) : null;
    const now = new Date().toISOString();
    return this.#serialize(projectId, async () =>
      this.#store.blocks.insert({
        id: randomUUID(),
        project_id: projectId,
        position: input.position ?? Number.MAX_SAFE_INTEGER,
        cell_type: cellType,
        language,
        source,
        status: "IDLE",
        status_reason: null,
        defines: analysis?.defines ?? [],
        uses: analysis?.uses ?? [],
        analysis_error: analysis?.error ?? null,
        last_execution_id: null,
        last_run_source: null,
        execution_count: input.execution_count ?? null,
        metadata: input.metadata ?? {},
        attachments: input.attachments ?? null,
        imported_outputs: input.imported_outputs ?? null,
        created_at: now,
        updated_at: now,
      }),
    );
  }

  /**
   * Edits a block. A new source makes the block STALE (when it had run) and every block that
   * uses a name it defined or now defines, transitively; a move only reorders.
   */
  async updateBlock(
    userId: string,
    id: string,
    input: {
      source?: string;
      position?: number;
      cell_type?: BlockRecord["cell_type"];
      metadata?: Record<string, unknown>;
    },
  ): Promise<BlockRecord> {
    const { project } = this.block(userId, id);
    const analysis =
      input.source !== undefined ? await this.#options.analyzer.analyze(input.source) : undefined;
    return this.#serialize(project.id, async () => {
      const block = this.#store.blocks.get(id);
      if (!block) throw new NotFoundError("BLOCK_NOT_FOUND", `no block ${id}`);
      if (input.position !== undefined && input.position !== block.position)
        this.#store.blocks.move(id, input.position);
      const cellType = input.cell_type ?? block.cell_type;
      const sourceChanged = input.source !== undefined && input.source !== block.source;
      const fields: Partial<BlockRecord> = {};
      if (input.metadata !== undefined) fields.metadata = input.metadata;
      if (input.cell_type !== undefined) fields.cell_type = input.cell_type;
      if (sourceChanged || input.cell_type !== undefined) {
        const code = cellType === "code";
        fields.source = input.source ?? block.source;
        fields.defines = code ? (analysis?.defines ?? block.defines) : [];
        fields.uses = code ? (analysis?.uses ?? block.uses) : [];
        fields.analysis_error = code ? (analysis?.error ?? block.analysis_error) : null;
        if (block.last_execution_id !== null && code) {
          fields.status = "STALE";
          fields.status_reason = "its source changed since it ran";
        } else if (!code) {
          fields.status = "IDLE";
          fields.status_reason = null;
        }
      }
      this.#store.blocks.update(id, fields);
      if (sourceChanged) {
        this.#markDependentsStale(project.id, id, new Set([...block.defines, ...(fields.defines ?? [])]));
      }
      return this.#store.blocks.get(id)!;
    });
  }

  async deleteBlock(userId: string, id: string): Promise<void> {
    const { project, block } = this.block(userId, id);
    await this.#serialize(project.id, async () => {
      this.#store.blocks.delete(id);
      // What it defined may still live in the kernel, but a fresh run would miss it.
      if (block.last_execution_id !== null) this.#markDependentsStale(project.id, id, new Set(block.defines));
    });
  }

  history(userId: string, id: string, limit = 100): Execution[] {
    this.block(userId, id);
    return this.#store.executions.listByBlock(id, { limit });
  }

  /** Marks COMPLETED blocks that (transitively) use `names` as STALE, naming the block that changed. */
  #markDependentsStale(projectId: string, sourceId: string, names: Set<string>): string[] {
    if (names.size === 0) return [];
    const blocks = this.#store.blocks.list(projectId);
    const source = blocks.find((b) => b.id === sourceId);
    const deps: BlockDeps[] = blocks
      .filter((b) => b.cell_type === "code")
      .map((b) => ({ id: b.id, position: b.position, defines: b.defines, uses: b.uses }));
    const marked: string[] = [];
    for (const id of dependentsOf(deps, names, sourceId)) {
      const block = blocks.find((b) => b.id === id)!;
      if (block.status !== "COMPLETED") continue;
      this.#store.blocks.update(id, {
        status: "STALE",
        status_reason: `block ${source ? source.position + 1 : "?"} (${sourceId}) changed a name it uses`,
      });
      marked.push(id);
    }
    return marked;
  }

  // ---- running ----------------------------------------------------------------------------

  /** Runs one block; when the project's kernel is new or lost its state, first the blocks it needs. */
  async executeBlock(
    userId: string,
    id: string,
    options: { timeoutMs?: number } = {},
  ): Promise<BlockRunResult> {
    const { project } = this.block(userId, id);
    return this.#serialize(project.id, () => this.#run(userId, project, id, options));
  }

  /**
   * Runs blocks in the order given, all of one project; stops at the first failure unless
   * `continueOnError`, reporting the rest as not run.
   */
  async executeMany(
    userId: string,
    blockIds: string[],
    options: { continueOnError?: boolean; timeoutMs?: number } = {},
  ): Promise<{ project_id: string; results: BlockRunResult[] }> {
    if (blockIds.length === 0)
      throw new InvalidArgumentError("INVALID_REQUEST", "block_ids: give at least one block id");
    const found = blockIds.map((id) => this.block(userId, id));
    const project = found[0]!.project;
    if (found.some((f) => f.project.id !== project.id)) {
      throw new InvalidArgumentError(
        "INVALID_REQUEST",
        "block_ids: every block must belong to the same project",
      );
    }
    return this.#serialize(project.id, async () => {
      const results: BlockRunResult[] = [];
      let stopped: string | undefined;
      for (const id of blockIds) {
        if (stopped) {
          results.push({ block_id: id, status: "not_run", execution: null, rebuilt: [], reason: stopped });
          continue;
        }
        const result = await this.#run(userId, project, id, options);
        results.push(result);
        if (result.status !== "completed" && !options.continueOnError) {
          stopped = `not run: block ${id} before it ${result.status === "failed" ? "failed" : "was not run"}`;
        }
      }
      return { project_id: project.id, results };
    });
  }

  /** Runs every STALE block of the project, in order. */
  async runStale(
    userId: string,
    projectId: string,
    options: { continueOnError?: boolean; timeoutMs?: number } = {},
  ): Promise<{ project_id: string; results: BlockRunResult[] }> {
    const project = this.project(userId, projectId);
    return this.#serialize(projectId, async () => {
      const results: BlockRunResult[] = [];
      let stopped: string | undefined;
      // Re-read each time: running one stale block can make later ones stale too.
      const done = new Set<string>();
      for (;;) {
        const next = this.#store.blocks.list(projectId).find((b) => b.status === "STALE" && !done.has(b.id));
        if (!next) break;
        done.add(next.id);
        if (stopped) {
          results.push({
            block_id: next.id,
            status: "not_run",
            execution: null,
            rebuilt: [],
            reason: stopped,
          });
          continue;
        }
        const result = await this.#run(userId, project, next.id, options);
        results.push(result);
        if (result.status !== "completed" && !options.continueOnError)
          stopped = `not run: block ${next.id} failed first`;
      }
      return { project_id: projectId, results };
    });
  }

  #liveSession(project: ProjectInfo): Session | undefined {
    const known = this.#kernels.get(project.id);
    if (!known) return undefined;
    try {
      return this.#options.sessions.get(project.user_id, known.sessionId);
    } catch {
      return undefined;
    }
  }

  async #endSession(project: ProjectInfo): Promise<void> {
    const session = this.#liveSession(project);
    this.#kernels.delete(project.id);
    if (session) await this.#options.sessions.delete(project.user_id, session.id).catch(() => undefined);
  }

  /** The project's session, started when missing; `fresh` when its kernel holds none of the blocks' state. */
  async #session(userId: string, project: ProjectInfo): Promise<{ session: Session; fresh: boolean }> {
    const known = this.#kernels.get(project.id);
    let session = this.#liveSession(project);
    if (!session) {
      session = await this.#options.sessions.create(userId, { kernel: project.kernel, mode: "write_access" });
      this.#kernels.set(project.id, { sessionId: session.id, restarts: 0 });
      return { session, fresh: known !== undefined || this.#anyRan(project.id) };
    }
    const restarts = session.restarts;
    const fresh = known !== undefined && known.restarts !== restarts;
    this.#kernels.set(project.id, { sessionId: session.id, restarts });
    return { session, fresh };
  }

  #anyRan(projectId: string): boolean {
    return this.#store.blocks.list(projectId).some((b) => b.last_execution_id !== null);
  }

  async #run(
    userId: string,
    project: ProjectInfo,
    id: string,
    options: { timeoutMs?: number },
  ): Promise<BlockRunResult> {
    const block = this.#store.blocks.get(id);
    if (!block) throw new NotFoundError("BLOCK_NOT_FOUND", `no block ${id}`);
    if (block.cell_type !== "code") {
      throw new NotebookConflictError(
        "BLOCK_NOT_CODE",
        `block ${id} is a ${block.cell_type} block: only code blocks run`,
      );
    }
    const { session, fresh } = await this.#session(userId, project);
    const rebuilt: BlockRunResult["rebuilt"] = [];
    if (fresh) {
      // The kernel is new (culled, died, restarted): re-run what this block needs, in order.
      const blocks = this.#store.blocks.list(project.id).filter((b) => b.cell_type === "code");
      const deps = blocks.map((b) => ({ id: b.id, position: b.position, defines: b.defines, uses: b.uses }));
      for (const upstreamId of upstreamOf(deps, id)) {
        const upstream = blocks.find((b) => b.id === upstreamId)!;
        const execution = await this.#runOne(session, upstream, options);
        rebuilt.push({ block_id: upstreamId, execution_id: execution.id, status: execution.status });
        if (execution.status !== "completed") {
          return {
            block_id: id,
            status: "not_run",
            execution: null,
            rebuilt,
            reason: `rebuilding the kernel's state failed at block ${upstreamId} (${execution.status})`,
          };
        }
      }
    }
    const execution = await this.#runOne(session, this.#store.blocks.get(id)!, options);
    // A run that killed or replaced the kernel leaves it without the blocks' state, even while
    // the session's restart count has not moved yet: the next run must rebuild.
    const lost = execution.error?.category === "kernel_died" || session.status === "restarting";
    this.#kernels.set(project.id, { sessionId: session.id, restarts: lost ? -1 : session.restarts });
    return {
      block_id: id,
      status: execution.status === "completed" ? "completed" : "failed",
      execution,
      rebuilt,
    };
  }

  /** Runs one block in the session and records its status, history and what it made stale. */
  async #runOne(session: Session, block: BlockRecord, options: { timeoutMs?: number }): Promise<Execution> {
    let execution: Execution;
    try {
      const submitted = session.submit(block.source, { timeoutMs: options.timeoutMs, blockId: block.id });
      // Named before it ends, so a server that dies mid-run leaves the block pointing at the
      // execution its restart will close as failed.
      this.#store.blocks.update(block.id, {
        status: "RUNNING",
        status_reason: null,
        last_execution_id: submitted.execution.id,
      });
      execution = await submitted.done;
    } catch (error) {
      this.#store.blocks.update(block.id, { status: "FAILED", status_reason: (error as Error).message });
      throw error;
    }
    const status: BlockStatus = execution.status === "completed" ? "COMPLETED" : "FAILED";
    const reason = execution.error ? `${execution.error.name}: ${execution.error.value}`.slice(0, 500) : null;
    this.#store.blocks.update(block.id, {
      status,
      status_reason: status === "FAILED" ? reason : null,
      last_execution_id: execution.id,
      last_run_source: block.source,
      execution_count: execution.execution_count,
      imported_outputs: null,
    });
    // Ran with another source than its dependents last saw: what they computed is out of date.
    if (block.last_run_source !== null && block.last_run_source !== block.source) {
      this.#markDependentsStale(block.project_id, block.id, new Set(block.defines));
    }
    return execution;
  }

  /** The last execution of a block, if it ran here. */
  lastExecution(block: BlockRecord): Execution | null {
    if (!block.last_execution_id) return null;
    return this.#store.executions.get(block.last_execution_id)?.execution ?? null;
  }

  /** The project whose kernel a session runs, if any. */
  projectForSession(sessionId: string): string | null {
    for (const [projectId, known] of this.#kernels) if (known.sessionId === sessionId) return projectId;
    return null;
  }

  // ---- notebooks and context ----------------------------------------------------------------

  /** Makes a project of an nbformat 4 notebook: its cells become blocks, outputs kept until they run here. */
  async importNotebook(userId: string, notebook: Notebook, name?: string): Promise<ProjectInfo> {
    const kernel = notebookKernelName(notebook);
    const title = typeof notebook.metadata.title === "string" ? notebook.metadata.title : undefined;
    const project = await this.createProject(userId, { name: name ?? title ?? "Imported notebook", kernel });
    const { kernelspec: _k, language_info: _l, runcell: _r, ...metadata } = notebook.metadata;
    this.#store.projects.update(project.id, { metadata });
    let position = 0;
    for (const cell of notebookToBlocks(notebook)) {
      await this.createBlock(userId, project.id, { ...cell, position: position++ });
    }
    return this.project(userId, project.id);
  }

  exportNotebook(userId: string, projectId: string): Notebook {
    const project = this.project(userId, projectId);
    return projectToNotebook(
      project,
      this.#store.blocks.list(projectId),
      (b) => this.lastExecution(b),
      "python",
    );
  }

  context(userId: string, projectId: string, options: ContextOptions): ReturnType<typeof renderContext> {
    const project = this.project(userId, projectId);
    return renderContext(project, this.#store.blocks.list(projectId), (b) => this.lastExecution(b), options);
  }
}
