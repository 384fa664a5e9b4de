import { z } from "zod";
import { NotFoundError } from "../../errors.js";
import type { Execution, ExecutionEvent } from "../../execution/types.js";
import type { ServerDeps } from "../deps.js";
import type { RouteSpec } from "../route.js";
import { EventsQuery, ExecutionEventSchema, ExecutionSchema, IdParams } from "../schemas.js";
import { openEventStream, wantsEventStream } from "../sse.js";

/** An execution of `userId`, live or stored, with the events kept for it. */
export function findExecution(
  deps: ServerDeps,
  userId: string,
  id: string,
): { execution: Execution; events: ExecutionEvent[]; live: boolean } {
  const live = deps.log.get(id);
  if (live && live.userId === userId)
    return { execution: deps.log.view(id)!, events: live.events, live: true };
  const stored = live ? undefined : deps.store.executions.get(id);
  if (!stored || stored.user_id !== userId) {
    throw new NotFoundError("EXECUTION_NOT_FOUND", `no execution ${id} among yours`);
  }
  return {
    execution: stored.execution,
    events: stored.events ?? synthesizeEvents(stored.execution),
    live: false,
  };
}

/** Events for a record stored without them (a server that died mid-run): its outputs, then done. */
export function synthesizeEvents(execution: Execution): ExecutionEvent[] {
  const base = { execution_id: execution.id };
  const events: ExecutionEvent[] = execution.outputs.map((output, i) => ({
    ...base,
    seq: i + 1,
    type: "output",
    output,
  }));
  const n = events.length;
  events.push({ ...base, seq: n + 1, type: "status", status: execution.status });
  events.push({ ...base, seq: n + 2, type: "done", execution });
  return events;
}

/** Streams an execution's events after `after` as SSE, following it live until `done`. */
export function streamExecution(
  deps: ServerDeps,
  context: { request: Parameters<typeof openEventStream>[0]; reply: Parameters<typeof openEventStream>[1] },
  userId: string,
  id: string,
  after: number,
): void {
  const found = findExecution(deps, userId, id);
  const stream = openEventStream(context.request, context.reply);
  const send = (event: ExecutionEvent) => {
    stream.send(event.type, event, event.seq);
    if (event.type === "done") stream.end();
  };
  const unsubscribe = found.live ? deps.log.subscribe(id, after, send) : undefined;
  if (!unsubscribe) {
    // Finished: its events came from the store with it.
    for (const event of found.events) if (event.seq > after) send(event);
    stream.end();
    return;
  }
  context.reply.raw.on("close", unsubscribe);
}

export function executionRoutes(deps: ServerDeps): RouteSpec[] {
  return [
    {
      method: "GET",
      url: "/api/v1/executions/{id}",
      tag: "executions",
      summary: "An execution record, running or finished (session and one-shot runs alike)",
      params: IdParams,
      responses: { 200: ExecutionSchema, 404: null },
      example: 'curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/v1/executions/$EXECUTION',
      handler: ({ user, params }) => findExecution(deps, user.id, (params as { id: string }).id).execution,
    },
    {
      method: "GET",
      url: "/api/v1/executions/{id}/events",
      tag: "executions",
      summary: "An execution's events after a cursor, so a client that lost its stream misses nothing",
      params: IdParams,
      query: EventsQuery,
      sse: "the events after the cursor, then each new one as it happens, ending with done",
      responses: {
        200: z.object({
          execution_id: z.string(),
          events: z.array(ExecutionEventSchema),
          complete: z.boolean().describe("true when the execution has finished (the last event is done)"),
        }),
      },
      example:
        "curl -H \"Authorization: Bearer $TOKEN\" 'http://127.0.0.1:8000/api/v1/executions/$EXECUTION/events?after=3'",
      handler: (context) => {
        const { user, params, query, request } = context;
        const id = (params as { id: string }).id;
        const after = (query as { after?: number }).after ?? 0;
        if (wantsEventStream(request)) return streamExecution(deps, context, user.id, id, after);
        const found = findExecution(deps, user.id, id);
        return {
          execution_id: id,
          events: found.events.filter((event) => event.seq > after),
          complete: !found.live,
        };
      },
    },
  ];
}
