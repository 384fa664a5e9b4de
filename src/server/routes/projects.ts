import { z } from "zod";
import { serializeNotebook } from "../../notebook/ipynb.js";
import { validateNotebook } from "../../notebook/parse-notebook.js";
import type { ServerDeps } from "../deps.js";
import type { RouteSpec } from "../route.js";
import {
  BlockRunResultSchema,
  BlockSchema,
  ContextQuery,
  CreateBlockBody,
  CreateProjectBody,
  IdParams,
  ImportQuery,
  ProjectSchema,
  RunStaleBody,
  UpdateProjectBody,
} from "../schemas.js";
import { refuseWhenClosing } from "./sessions.js";

type Id = { id: string };
const base = "http://127.0.0.1:8000/api/v1/projects";
const auth = '-H "Authorization: Bearer $TOKEN"';
const json = `${auth} -H 'Content-Type: application/json'`;

export function projectRoutes(deps: ServerDeps): RouteSpec[] {
  const notebooks = deps.notebooks;
  return [
    {
      method: "POST",
      url: "/api/v1/projects",
      tag: "notebook projects",
      summary: "Create a notebook project: blocks that run in order in one sandboxed kernel",
      body: CreateProjectBody,
      responses: { 201: ProjectSchema, 400: null },
      example: `curl ${json} -d '{"name": "analysis"}' ${base}`,
      handler: async ({ user, body, reply }) => {
        const project = await notebooks.createProject(user.id, body as z.infer<typeof CreateProjectBody>);
        reply.code(201);
        return notebooks.view(project);
      },
    },
    {
      method: "GET",
      url: "/api/v1/projects",
      tag: "notebook projects",
      summary: "Your projects",
      responses: { 200: z.object({ projects: z.array(ProjectSchema) }) },
      example: `curl ${auth} ${base}`,
      handler: ({ user }) => ({ projects: notebooks.listProjects(user.id).map((p) => notebooks.view(p)) }),
    },
    {
      method: "GET",
      url: "/api/v1/projects/{id}",
      tag: "notebook projects",
      summary: "One project",
      params: IdParams,
      responses: { 200: ProjectSchema, 404: null },
      handler: ({ user, params }) => notebooks.view(notebooks.project(user.id, (params as Id).id)),
    },
    {
      method: "PATCH",
      url: "/api/v1/projects/{id}",
      tag: "notebook projects",
      summary: "Rename a project or change its kernel (a new kernel starts on the next run)",
      params: IdParams,
      body: UpdateProjectBody,
      responses: { 200: ProjectSchema, 404: null },
      example: `curl -X PATCH ${json} -d '{"name": "renamed"}' ${base}/$PROJECT`,
      handler: async ({ user, params, body }) =>
        notebooks.view(
          await notebooks.updateProject(
            user.id,
            (params as Id).id,
            body as z.infer<typeof UpdateProjectBody>,
          ),
        ),
    },
    {
      method: "DELETE",
      url: "/api/v1/projects/{id}",
      tag: "notebook projects",
      summary: "Delete a project and its blocks; its kernel stops (executions stay readable by id)",
      params: IdParams,
      responses: { 204: null, 404: null },
      handler: async ({ user, params, reply }) => {
        await notebooks.deleteProject(user.id, (params as Id).id);
        reply.code(204);
        return null;
      },
    },
    {
      method: "POST",
      url: "/api/v1/projects/{id}/blocks",
      tag: "blocks",
      summary: "Add a block (at `position`, else at the end)",
      params: IdParams,
      body: CreateBlockBody,
      responses: { 201: BlockSchema, 400: null, 404: null },
      example: `curl ${json} -d '{"source": "import math\\nr = 2"}' ${base}/$PROJECT/blocks`,
      handler: async ({ user, params, body, reply }) => {
        const block = await notebooks.createBlock(
          user.id,
          (params as Id).id,
          body as z.infer<typeof CreateBlockBody>,
        );
        reply.code(201);
        return notebooks.blockInfo(block);
      },
    },
    {
      method: "GET",
      url: "/api/v1/projects/{id}/blocks",
      tag: "blocks",
      summary: "A project's blocks in order, with their statuses",
      params: IdParams,
      responses: { 200: z.object({ blocks: z.array(BlockSchema) }), 404: null },
      example: `curl ${auth} ${base}/$PROJECT/blocks`,
      handler: ({ user, params }) => ({
        blocks: notebooks.listBlocks(user.id, (params as Id).id).map((b) => notebooks.blockInfo(b)),
      }),
    },
    {
      method: "POST",
      url: "/api/v1/projects/{id}/run-stale",
      tag: "blocks",
      summary:
        "Run the project's STALE blocks in order (stopping at the first failure unless continue_on_error)",
      params: IdParams,
      body: RunStaleBody,
      bodyOptional: true,
      responses: {
        200: z.object({ project_id: z.string(), results: z.array(BlockRunResultSchema) }),
        404: null,
      },
      example: `curl -X POST ${auth} ${base}/$PROJECT/run-stale`,
      handler: async ({ user, params, body }) => {
        refuseWhenClosing(deps);
        const input = body as z.infer<typeof RunStaleBody>;
        return notebooks.runStale(user.id, (params as Id).id, {
          continueOnError: input.continue_on_error,
          timeoutMs: input.timeout_ms,
        });
      },
    },
    {
      method: "GET",
      url: "/api/v1/projects/{id}/notebook",
      tag: "notebook projects",
      summary:
        "Export the project as an nbformat 4 notebook (.ipynb) with outputs, counts, statuses and timings",
      params: IdParams,
      responses: {
        200: { mediaType: "application/x-ipynb+json", description: "an nbformat 4.5 notebook" },
        404: null,
      },
      example: `curl ${auth} -o analysis.ipynb ${base}/$PROJECT/notebook`,
      handler: ({ user, params, reply }) => {
        const id = (params as Id).id;
        const notebook = notebooks.exportNotebook(user.id, id);
        const name = notebooks.project(user.id, id).name.replace(/[^A-Za-z0-9._-]+/g, "_") || "notebook";
        reply.header("content-type", "application/x-ipynb+json");
        reply.header("content-disposition", `attachment; filename="${name}.ipynb"`);
        return serializeNotebook(notebook);
      },
    },
    {
      method: "POST",
      url: "/api/v1/projects/import",
      tag: "notebook projects",
      summary: "Import an nbformat 4 notebook (the body) as a new project; outputs are kept until blocks run",
      query: ImportQuery,
      body: z
        .looseObject({ nbformat: z.number(), cells: z.array(z.unknown()) })
        .describe("an nbformat 4 notebook"),
      responses: { 201: ProjectSchema, 400: null },
      example: `curl ${json} --data-binary @analysis.ipynb '${base}/import?name=analysis'`,
      handler: async ({ user, body, query, reply }) => {
        const notebook = validateNotebook(body, "the notebook");
        const project = await notebooks.importNotebook(
          user.id,
          notebook,
          (query as z.infer<typeof ImportQuery>).name,
        );
        reply.code(201);
        return notebooks.view(project);
      },
    },
    {
      method: "GET",
      url: "/api/v1/projects/{id}/context",
      tag: "notebook projects",
      summary:
        "The project rendered for a model's prompt: code, statuses, outputs (elided), errors, durations",
      description:
        "Markdown by default; ?format=json for a structured form. ?max_chars bounds the size (default 20000).",
      params: IdParams,
      query: ContextQuery,
      responses: {
        200: {
          mediaType: "text/markdown",
          description: "the project as markdown (or JSON with ?format=json)",
        },
        404: null,
      },
      example: `curl ${auth} '${base}/$PROJECT/context?max_chars=8000'`,
      handler: ({ user, params, query, reply }) => {
        const q = query as z.infer<typeof ContextQuery>;
        const rendered = notebooks.context(user.id, (params as Id).id, {
          format: q.format,
          maxChars: q.max_chars,
        });
        if (typeof rendered === "string") reply.header("content-type", "text/markdown; charset=utf-8");
        return rendered;
      },
    },
  ];
}
