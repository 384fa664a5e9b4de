/**
 * The AI-notebook API end to end (projects, blocks, STALE, run-many, .ipynb, context) on a real
 * `runcell serve`: a small client bound to one server and one user's token, which remembers the
 * projects it made so a test can delete them (and stop their kernels) when it ends.
 */
import { execFileSync } from "node:child_process";
import { type Execution, expectStatus, request, type Response, type Server } from "./server-helpers.js";

export type { Execution };

export type BlockStatus = "IDLE" | "RUNNING" | "COMPLETED" | "FAILED" | "STALE";

/** A project as the API returns it. */
export interface Project {
  id: string;
  name: string;
  kernel: string;
  metadata: Record<string, unknown>;
  session_id: string | null;
  block_count: number;
  created_at: string;
  updated_at: string;
}

/** A block as the API returns it. */
export interface Block {
  id: string;
  project_id: string;
  position: number;
  cell_type: "code" | "markdown" | "raw";
  language: string;
  source: string;
  status: BlockStatus;
  status_reason: string | null;
  defines: string[];
  uses: string[];
  analysis_error: string | null;
  last_execution_id: string | null;
  execution_count: number | null;
  metadata: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

/** What running one block did. */
export interface BlockRunResult {
  block_id: string;
  status: "completed" | "failed" | "not_run";
  execution: Execution | null;
  rebuilt: Array<{ block_id: string; execution_id: string; status: string }>;
  reason?: string;
}

/** A block given to `NotebookClient.project`: its source, or the whole create body. */
export type BlockSpec =
  string | { source: string; cell_type?: Block["cell_type"]; metadata?: Record<string, unknown> };

/** An nbformat 4 notebook as parsed JSON. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NotebookJson = Record<string, any>;

/** The AI-notebook routes for one user. */
export class NotebookClient {
  /** Projects this client created and has not deleted. */
  readonly created = new Set<string>();

  constructor(
    readonly server: Server,
    readonly token: string,
  ) {}

  get(path: string) {
    return expectStatus(200, this.server, "GET", `/api/v1${path}`, { token: this.token });
  }

  /** Any request as this user (status not checked). */
  request(method: string, path: string, body?: unknown): Promise<Response> {
    return request(this.server, method, `/api/v1${path}`, { token: this.token, body });
  }

  /** Creates a project (201) with the given blocks appended in order. */
  async project(name: string, blocks: BlockSpec[] = []): Promise<{ project: Project; blocks: Block[] }> {
    const project: Project = await expectStatus(201, this.server, "POST", "/api/v1/projects", {
      token: this.token,
      body: { name },
    });
    this.created.add(project.id);
    const made: Block[] = [];
    for (const spec of blocks) made.push(await this.addBlock(project.id, spec));
    return { project, blocks: made };
  }

  /** Adds a block (201), at `position` when given. */
  addBlock(projectId: string, spec: BlockSpec, position?: number): Promise<Block> {
    const body = typeof spec === "string" ? { source: spec } : { ...spec };
    return expectStatus(201, this.server, "POST", `/api/v1/projects/${projectId}/blocks`, {
      token: this.token,
      body: position === undefined ? body : { ...body, position },
    });
  }

  getProject(id: string): Promise<Project> {
    return this.get(`/projects/${id}`);
  }

  block(id: string): Promise<Block> {
    return this.get(`/blocks/${id}`);
  }

  async blocks(projectId: string): Promise<Block[]> {
    return (await this.get(`/projects/${projectId}/blocks`)).blocks;
  }

  /** Block statuses by id. */
  async statuses(projectId: string): Promise<Record<string, BlockStatus>> {
    return Object.fromEntries((await this.blocks(projectId)).map((b) => [b.id, b.status]));
  }

  patch(id: string, body: Record<string, unknown>): Promise<Block> {
    return expectStatus(200, this.server, "PATCH", `/api/v1/blocks/${id}`, { token: this.token, body });
  }

  /** POST /blocks/{id}/execute (200). */
  run(id: string, body: Record<string, unknown> = {}): Promise<BlockRunResult & { block: Block }> {
    return expectStatus(200, this.server, "POST", `/api/v1/blocks/${id}/execute`, {
      token: this.token,
      body,
    });
  }

  /** POST /blocks/execute-multiple (200). */
  runMany(
    blockIds: string[],
    extra: Record<string, unknown> = {},
  ): Promise<{ project_id: string; results: BlockRunResult[] }> {
    return expectStatus(200, this.server, "POST", "/api/v1/blocks/execute-multiple", {
      token: this.token,
      body: { block_ids: blockIds, ...extra },
    });
  }

  /** POST /projects/{id}/run-stale (200). */
  runStale(
    projectId: string,
    body: Record<string, unknown> = {},
  ): Promise<{ project_id: string; results: BlockRunResult[] }> {
    return expectStatus(200, this.server, "POST", `/api/v1/projects/${projectId}/run-stale`, {
      token: this.token,
      body,
    });
  }

  /** GET /blocks/{id}/executions: the block's history, newest first. */
  async history(id: string, limit?: number): Promise<Execution[]> {
    const query = limit === undefined ? "" : `?limit=${limit}`;
    return (await this.get(`/blocks/${id}/executions${query}`)).executions;
  }

  /** GET /projects/{id}/notebook (200): the raw text and the parsed notebook. */
  async exportNotebook(projectId: string): Promise<{ response: Response; notebook: NotebookJson }> {
    const response = await this.request("GET", `/projects/${projectId}/notebook`);
    if (response.status !== 200) {
      throw new Error(`export of ${projectId}: ${response.status}: ${response.text.slice(0, 500)}`);
    }
    return { response, notebook: JSON.parse(response.text) as NotebookJson };
  }

  /** POST /projects/import (201) with a notebook (object or raw text). */
  async importNotebook(notebook: NotebookJson | string, name?: string): Promise<Project> {
    const query = name === undefined ? "" : `?name=${encodeURIComponent(name)}`;
    const project: Project = await expectStatus(201, this.server, "POST", `/api/v1/projects/import${query}`, {
      token: this.token,
      raw: typeof notebook === "string" ? notebook : JSON.stringify(notebook),
    });
    this.created.add(project.id);
    return project;
  }

  /** GET /projects/{id}/context with the given query; the raw response. */
  context(projectId: string, query = ""): Promise<Response> {
    return this.request("GET", `/projects/${projectId}/context${query ? `?${query}` : ""}`);
  }

  async deleteProject(id: string): Promise<void> {
    const response = await this.request("DELETE", `/projects/${id}`);
    if (response.status !== 204 && response.status !== 404) {
      throw new Error(`DELETE project ${id}: ${response.status}: ${response.text.slice(0, 300)}`);
    }
    this.created.delete(id);
  }

  /** Deletes every project this client made (their kernels stop with them). */
  async cleanup(): Promise<void> {
    for (const id of [...this.created]) await this.deleteProject(id);
  }
}

/** A compact view of run results for assertion messages. */
export function describeResults(results: BlockRunResult[]): string {
  return JSON.stringify(
    results.map((r) => ({
      block: r.block_id,
      status: r.status,
      execution: r.execution && {
        status: r.execution.status,
        stdout: r.execution.stdout.slice(0, 200),
        error: r.execution.error && `${r.execution.error.name}: ${r.execution.error.value}`,
      },
      rebuilt: r.rebuilt,
      reason: r.reason,
    })),
  );
}

/** Validates notebook JSON text with Debian's nbformat; returns its error text, or "" when valid. */
export function nbformatErrors(text: string): string {
  try {
    execFileSync(
      "/usr/bin/python3",
      ["-c", "import nbformat, sys; nbformat.validate(nbformat.reads(sys.stdin.read(), 4))"],
      { input: text, stdio: ["pipe", "ignore", "pipe"], timeout: 30_000 },
    );
    return "";
  } catch (error) {
    return String((error as { stderr?: Buffer }).stderr ?? error);
  }
}

/** nbformat's multiline strings (a string or a list of lines) as one string. */
export function joinLines(value: unknown): unknown {
  return Array.isArray(value) && value.every((v) => typeof v === "string") ? value.join("") : value;
}

/**
 * An nbformat output with its multiline strings joined (stream text, text MIME data), so outputs
 * that differ only in how they split lines compare equal.
 */
export function normalizeOutput(output: NotebookJson): NotebookJson {
  const copy: NotebookJson = { ...output };
  if ("text" in copy) copy.text = joinLines(copy.text);
  if (copy.data && typeof copy.data === "object") {
    copy.data = Object.fromEntries(
      Object.entries(copy.data as Record<string, unknown>).map(([mime, value]) => [mime, joinLines(value)]),
    );
  }
  return copy;
}
