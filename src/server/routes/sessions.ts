import { z } from "zod";
import { InvalidArgumentError, NotFoundError } from "../../errors.js";
import type { ServerDeps } from "../deps.js";
import { HttpError } from "../errors.js";
import type { RouteSpec } from "../route.js";
import { CreateSessionBody, ExecuteBody, ExecutionSchema, IdParams, SessionSchema } from "../schemas.js";
import { wantsEventStream } from "../sse.js";
import { streamExecution } from "./executions.js";

type Id = { id: string };

/** Refuses new work once a graceful shutdown began. */
export function refuseWhenClosing(deps: ServerDeps): void {
  if (deps.closing())
    throw new HttpError(503, "SHUTTING_DOWN", "the server is shutting down; retry on its next start");
}

export function sessionRoutes(deps: ServerDeps): RouteSpec[] {
  const base = "http://127.0.0.1:8000/api/v1/sessions";
  const auth = '-H "Authorization: Bearer $TOKEN"';
  return [
    {
      method: "POST",
      url: "/api/v1/sessions",
      tag: "sessions",
      summary: "Start a session: a stateful kernel in its own sandbox (from the warm pool when it matches)",
      body: CreateSessionBody,
      responses: { 201: SessionSchema, 400: null, 429: null, 503: null },
      example: `curl ${auth} -H 'Content-Type: application/json' -d '{"mode": "write_access"}' ${base}`,
      handler: async ({ user, body, reply }) => {
        refuseWhenClosing(deps);
        const request = body as z.infer<typeof CreateSessionBody>;
        try {
          const session = await deps.sessions.create(user.id, request);
          reply.code(201);
          return session.info();
        } catch (error) {
          // An unknown kernel is a bad request here, not a missing resource.
          if (error instanceof NotFoundError && error.code === "KERNEL_NOT_FOUND") {
            throw new InvalidArgumentError("UNKNOWN_KERNEL", error.message);
          }
          throw error;
        }
      },
    },
    {
      method: "GET",
      url: "/api/v1/sessions",
      tag: "sessions",
      summary: "Your live sessions",
      responses: { 200: z.object({ sessions: z.array(SessionSchema) }) },
      example: `curl ${auth} ${base}`,
      handler: ({ user }) => ({ sessions: deps.sessions.list(user.id) }),
    },
    {
      method: "GET",
      url: "/api/v1/sessions/{id}",
      tag: "sessions",
      summary: "One session, live or ended (status ended, with end_reason)",
      params: IdParams,
      responses: { 200: SessionSchema, 404: null },
      example: `curl ${auth} ${base}/$SESSION`,
      handler: ({ user, params }) => deps.sessions.info(user.id, (params as Id).id),
    },
    {
      method: "DELETE",
      url: "/api/v1/sessions/{id}",
      tag: "sessions",
      summary: "End a session: its kernel stops; its executions stay readable",
      params: IdParams,
      responses: { 204: null, 404: null, 409: null },
      example: `curl -X DELETE ${auth} ${base}/$SESSION`,
      handler: async ({ user, params, reply }) => {
        await deps.sessions.delete(user.id, (params as Id).id);
        reply.code(204);
        return null;
      },
    },
    {
      method: "POST",
      url: "/api/v1/sessions/{id}/execute",
      tag: "sessions",
      summary: "Run code in the session's kernel; executions on one session run one at a time, in order",
      description:
        "Answers the finished Execution. A timeout interrupts the code and the kernel keeps its state; a kernel " +
        "that dies fails the execution with error.category kernel_died and the session gets a fresh kernel.",
      params: IdParams,
      body: ExecuteBody,
      sse: "status and output events as they happen (id: is the event's seq), ending with a done event that holds the full record",
      responses: { 200: ExecutionSchema, 404: null, 409: null, 413: null, 429: null },
      example: `curl ${auth} -H 'Content-Type: application/json' -d '{"code": "x = 21 * 2\\nx"}' ${base}/$SESSION/execute`,
      handler: async (context) => {
        const { user, params, body, request } = context;
        refuseWhenClosing(deps);
        const input = body as z.infer<typeof ExecuteBody>;
        const session = deps.sessions.get(user.id, (params as Id).id);
        // By default the execution outlives its client (it can be fetched later by id).
        const leave = input.cancel_on_disconnect ? new AbortController() : undefined;
        const { execution, done } = session.submit(input.code, {
          timeoutMs: input.timeout_ms,
          stdin: input.stdin,
          signal: leave?.signal,
        });
        if (leave) {
          context.reply.raw.on("close", () => {
            if (!context.reply.raw.writableFinished) leave.abort(new Error("the client disconnected"));
          });
        }
        if (wantsEventStream(request)) return streamExecution(deps, context, user.id, execution.id, 0);
        return done;
      },
    },
    {
      method: "POST",
      url: "/api/v1/sessions/{id}/interrupt",
      tag: "sessions",
      summary: "Interrupt the running execution (KeyboardInterrupt); the kernel keeps its state",
      params: IdParams,
      responses: { 200: SessionSchema, 404: null, 409: null },
      example: `curl -X POST ${auth} ${base}/$SESSION/interrupt`,
      handler: async ({ user, params }) => {
        const session = deps.sessions.get(user.id, (params as Id).id);
        await session.interrupt();
        return session.info();
      },
    },
    {
      method: "POST",
      url: "/api/v1/sessions/{id}/restart",
      tag: "sessions",
      summary: "Replace the session's kernel with a fresh one (state lost; startup_code runs again)",
      params: IdParams,
      responses: { 200: SessionSchema, 404: null, 409: null },
      example: `curl -X POST ${auth} ${base}/$SESSION/restart`,
      handler: async ({ user, params }) => {
        const session = deps.sessions.get(user.id, (params as Id).id);
        await session.restart();
        return session.info();
      },
    },
  ];
}
