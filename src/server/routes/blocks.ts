import { z } from "zod";
import type { ServerDeps } from "../deps.js";
import type { RouteSpec } from "../route.js";
import {
  BlockRunResultSchema,
  BlockSchema,
  ExecuteBlockBody,
  ExecuteMultipleBody,
  ExecutionSchema,
  HistoryQuery,
  IdParams,
  UpdateBlockBody,
} from "../schemas.js";
import { refuseWhenClosing } from "./sessions.js";

type Id = { id: string };
const base = "http://127.0.0.1:8000/api/v1/blocks";
const auth = '-H "Authorization: Bearer $TOKEN"';
const json = `${auth} -H 'Content-Type: application/json'`;

export function blockRoutes(deps: ServerDeps): RouteSpec[] {
  const notebooks = deps.notebooks;
  return [
    {
      method: "GET",
      url: "/api/v1/blocks/{id}",
      tag: "blocks",
      summary: "One block, with its status and what it defines and uses",
      params: IdParams,
      responses: { 200: BlockSchema, 404: null },
      handler: ({ user, params }) => notebooks.blockInfo(notebooks.block(user.id, (params as Id).id).block),
    },
    {
      method: "PATCH",
      url: "/api/v1/blocks/{id}",
      tag: "blocks",
      summary: "Edit or move a block; a new source makes it and the blocks that use its names STALE",
      params: IdParams,
      body: UpdateBlockBody,
      responses: { 200: BlockSchema, 404: null },
      example: `curl -X PATCH ${json} -d '{"source": "r = 3"}' ${base}/$BLOCK`,
      handler: async ({ user, params, body }) =>
        notebooks.blockInfo(
          await notebooks.updateBlock(user.id, (params as Id).id, body as z.infer<typeof UpdateBlockBody>),
        ),
    },
    {
      method: "DELETE",
      url: "/api/v1/blocks/{id}",
      tag: "blocks",
      summary: "Delete a block (its history stays readable by execution id)",
      params: IdParams,
      responses: { 204: null, 404: null },
      handler: async ({ user, params, reply }) => {
        await notebooks.deleteBlock(user.id, (params as Id).id);
        reply.code(204);
        return null;
      },
    },
    {
      method: "POST",
      url: "/api/v1/blocks/{id}/execute",
      tag: "blocks",
      summary:
        "Run a block in its project's kernel (started on first run; state rebuilt from upstream blocks when lost)",
      params: IdParams,
      body: ExecuteBlockBody,
      bodyOptional: true,
      responses: { 200: BlockRunResultSchema.extend({ block: BlockSchema }), 404: null, 409: null },
      example: `curl -X POST ${auth} ${base}/$BLOCK/execute`,
      handler: async ({ user, params, body }) => {
        refuseWhenClosing(deps);
        const id = (params as Id).id;
        const result = await notebooks.executeBlock(user.id, id, {
          timeoutMs: (body as z.infer<typeof ExecuteBlockBody>).timeout_ms,
        });
        return { ...result, block: notebooks.blockInfo(notebooks.block(user.id, id).block) };
      },
    },
    {
      method: "POST",
      url: "/api/v1/blocks/execute-multiple",
      tag: "blocks",
      summary:
        "Run blocks of one project in the order given; stops at the first failure unless continue_on_error",
      body: ExecuteMultipleBody,
      responses: {
        200: z.object({ project_id: z.string(), results: z.array(BlockRunResultSchema) }),
        400: null,
      },
      example: `curl ${json} -d '{"block_ids": ["'$B1'", "'$B2'"], "continue_on_error": false}' ${base}/execute-multiple`,
      handler: async ({ user, body }) => {
        refuseWhenClosing(deps);
        const input = body as z.infer<typeof ExecuteMultipleBody>;
        return notebooks.executeMany(user.id, input.block_ids, {
          continueOnError: input.continue_on_error,
          timeoutMs: input.timeout_ms,
        });
      },
    },
    {
      method: "GET",
      url: "/api/v1/blocks/{id}/executions",
      tag: "blocks",
      summary: "The block's execution history, newest first",
      params: IdParams,
      query: HistoryQuery,
      responses: { 200: z.object({ executions: z.array(ExecutionSchema) }), 404: null },
      example: `curl ${auth} ${base}/$BLOCK/executions`,
      handler: ({ user, params, query }) => ({
        executions: notebooks.history(
          user.id,
          (params as Id).id,
          (query as z.infer<typeof HistoryQuery>).limit,
        ),
      }),
    },
  ];
}
