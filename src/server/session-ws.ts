import type { FastifyInstance, FastifyRequest } from "fastify";
import type { WebSocket } from "ws";
import { z } from "zod";
import type { Session } from "../sessions/session.js";
import type { SessionEvent } from "../sessions/types.js";
import type { ServerDeps } from "./deps.js";
import { toHttpError } from "./errors.js";
import type { Authenticate } from "./route.js";
import { IdParams, WsQuery } from "./schemas.js";
import { refuseWhenClosing } from "./routes/sessions.js";

/** A client whose unsent frames pass this is dropped (it reconnects with its cursor and loses nothing). */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

const ClientMessage = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("execute"),
    code: z.string(),
    timeout_ms: z.number().int().positive().optional(),
    stdin: z.string().optional(),
    request_id: z.string().max(256).optional(),
  }),
  z.object({ type: z.literal("interrupt"), request_id: z.string().max(256).optional() }),
  z.object({ type: z.literal("ping"), request_id: z.string().max(256).optional() }),
]);

declare module "fastify" {
  interface FastifyRequest {
    runcellSession?: Session;
  }
}

/**
 * `GET /api/v1/sessions/{id}/ws`: the session's event stream over a WebSocket, replayed from a
 * cursor (`?after=N`), and a channel to execute and interrupt. The token and the session are
 * checked before the upgrade, so a refusal is a plain HTTP error.
 */
export function registerSessionSocket(
  app: FastifyInstance,
  deps: ServerDeps,
  authenticate: Authenticate,
): void {
  app.get(
    "/api/v1/sessions/:id/ws",
    {
      websocket: true,
      config: { routeUrl: "/api/v1/sessions/{id}/ws" },
      preValidation: async (request: FastifyRequest) => {
        const user = authenticate(request);
        const params = IdParams.parse(request.params);
        request.runcellSession = deps.sessions.get(user.id, params.id);
      },
    },
    (socket: WebSocket, request: FastifyRequest) => {
      const session = request.runcellSession!;
      const parsed = WsQuery.safeParse(request.query);
      const after = parsed.success ? (parsed.data.after ?? 0) : 0;
      const send = (frame: unknown) => {
        if (socket.readyState !== socket.OPEN) return;
        if (socket.bufferedAmount > MAX_BUFFERED_BYTES) {
          socket.close(1013, "too far behind; reconnect with ?after=<last seq>");
          return;
        }
        socket.send(JSON.stringify(frame));
      };
      if (after + 1 < session.events.oldestSeq && after < session.events.lastSeq) {
        send({ type: "gap", oldest_seq: session.events.oldestSeq });
      }
      const { unsubscribe } = session.events.subscribe(after, (event: SessionEvent) => {
        send(event);
        if (event.type === "session" && event.status === "ended") socket.close(1000, "session ended");
      });
      if (session.ended) socket.close(1000, "session ended");
      socket.on("close", unsubscribe);
      socket.on("message", (data) => {
        let message: z.infer<typeof ClientMessage>;
        try {
          const raw: unknown = JSON.parse(String(data));
          const result = ClientMessage.safeParse(raw);
          if (!result.success) {
            const problem = result.error.issues
              .map((i) => `${i.path.join(".") || "message"}: ${i.message}`)
              .join("; ");
            // Echo the request id when there is one, so the client knows which request failed.
            const requestId = (raw as { request_id?: unknown } | null)?.request_id;
            return send({
              type: "error",
              ...(typeof requestId === "string" ? { request_id: requestId.slice(0, 256) } : {}),
              error: { code: "INVALID_REQUEST", message: problem },
            });
          }
          message = result.data;
        } catch (error) {
          return send({
            type: "error",
            error: { code: "INVALID_JSON", message: `not JSON: ${(error as Error).message}` },
          });
        }
        void handle(message).catch((error: unknown) => {
          send({ type: "error", request_id: message.request_id, error: toHttpError(error).body.error });
        });
      });

      async function handle(message: z.infer<typeof ClientMessage>): Promise<void> {
        switch (message.type) {
          case "ping":
            return send({ type: "pong", request_id: message.request_id });
          case "interrupt":
            await session.interrupt();
            return send({ type: "interrupted", request_id: message.request_id });
          case "execute": {
            refuseWhenClosing(deps);
            const { execution } = session.submit(message.code, {
              timeoutMs: message.timeout_ms,
              stdin: message.stdin,
            });
            return send({ type: "accepted", request_id: message.request_id, execution_id: execution.id });
          }
        }
      }
    },
  );
}
