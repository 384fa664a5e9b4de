import websocket from "@fastify/websocket";
import Fastify, { type FastifyInstance, type FastifyRequest, LogController } from "fastify";
import type { UserInfo } from "../store/types.js";
import type { ServerDeps } from "./deps.js";
import { renderDocsPage } from "./docs-page.js";
import { HttpError, toHttpError } from "./errors.js";
import { buildOpenApi } from "./openapi.js";
import { presentedToken, registerRoutes, type RouteSpec } from "./route.js";
import { executionRoutes } from "./routes/executions.js";
import { blockRoutes } from "./routes/blocks.js";
import { kernelRoutes } from "./routes/kernels.js";
import { oneshotRoutes } from "./routes/oneshot.js";
import { projectRoutes } from "./routes/projects.js";
import { sessionRoutes } from "./routes/sessions.js";
import { registerSessionSocket } from "./session-ws.js";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Every API route, in the order the reference lists them. */
export function apiRoutes(deps: ServerDeps): RouteSpec[] {
  return [
    ...oneshotRoutes(deps),
    ...sessionRoutes(deps),
    ...executionRoutes(deps),
    ...kernelRoutes(deps),
    ...projectRoutes(deps),
    ...blockRoutes(deps),
  ];
}

/** Hides tokens passed as `?token=` from logs. */
function redact(url: string): string {
  return url.replace(/([?&]token=)[^&]*/g, "$1[redacted]");
}

/**
 * Builds the Fastify app: routes validated with zod, one error mapper, request ids, metrics,
 * the OpenAPI document and its reference page, and the session WebSocket.
 */
export async function buildApp(deps: ServerDeps, logger: object | boolean): Promise<FastifyInstance> {
  const app = Fastify({
    logger,
    bodyLimit: deps.config.body_limit_bytes,
    // One log line per request, written in onResponse with the token redacted.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: "x-request-id",
    genReqId: (request) => {
      const given = request.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : crypto.randomUUID();
    },
    keepAliveTimeout: 75_000,
    forceCloseConnections: true,
    return503OnClosing: true,
  });
  // Every hop without Nagle: a small response must not wait for the client's delayed ACK.
  app.server.on("connection", (socket) => socket.setNoDelay(true));
  // JSON only: a text body is refused with 415 rather than handed to the routes as a string.
  app.removeContentTypeParser("text/plain");
  // An empty JSON body reads as no body, so POSTs without one (interrupt, run-stale) work from any client.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, text, done) => {
    if (text === "" || (typeof text === "string" && text.trim() === "")) return done(null, undefined);
    try {
      done(null, JSON.parse(text as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  await app.register(websocket, { options: { maxPayload: deps.config.body_limit_bytes } });

  const authenticate = (request: FastifyRequest): UserInfo => {
    const token = presentedToken(request);
    const user = token ? deps.store.tokens.authenticate(token) : undefined;
    if (!user) {
      throw new HttpError(
        401,
        "UNAUTHORIZED",
        token
          ? "the token is not valid; create one with `runcell token create --user NAME`"
          : "send a token: Authorization: Bearer <token> (create one with `runcell token create --user NAME`)",
      );
    }
    return user;
  };

  // Callback-style hooks: an async hook costs promise turns on every request.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    done();
  });
  app.addHook("onResponse", (request, reply, done) => {
    const route = (request.routeOptions.config as { routeUrl?: string } | undefined)?.routeUrl ?? "unmatched";
    const seconds = reply.elapsedTime / 1000;
    deps.metrics.request(request.method, route, reply.statusCode, seconds);
    request.log.info(
      {
        method: request.method,
        url: redact(request.url),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 100) / 100,
      },
      "request",
    );
    done();
  });
  app.setErrorHandler((error, request, reply) => {
    const mapped = toHttpError(error);
    if (mapped.internal) request.log.error({ err: error, url: redact(request.url) }, "request failed");
    else request.log.debug({ code: mapped.body.error.code }, mapped.body.error.message);
    void reply.code(mapped.status).send(mapped.body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({
      error: {
        code: "NOT_FOUND",
        message: `no route ${request.method} ${redact(request.url.split("?")[0]!)}; see /api/v1/docs`,
      },
    });
  });

  const routes = apiRoutes(deps);
  registerRoutes(app, routes, authenticate);
  registerSessionSocket(app, deps, authenticate);

  const wsRoute: RouteSpec = {
    method: "GET",
    url: "/api/v1/sessions/{id}/ws",
    tag: "sessions",
    summary:
      "WebSocket: the session's live events (each with seq), replayed after ?after=N; execute and interrupt",
    description:
      'Server frames: {"seq", "session_id", "type": "execution", "event": ExecutionEvent} and {"seq", "session_id", ' +
      '"type": "session", "status", "reason"?, "state_lost"?}; replies {"type": "accepted", "request_id", ' +
      '"execution_id"}, {"type": "pong"}, {"type": "error", "error"}; {"type": "gap", "oldest_seq"} when the ' +
      'cursor is older than what is kept. Client frames: {"type": "execute", "code", "timeout_ms"?, ' +
      '"request_id"?}, {"type": "interrupt"}, {"type": "ping"}. Browsers pass the token as ?token=.',
    responses: {
      101: { mediaType: "application/json", description: "switching to WebSocket" },
      404: null,
      409: null,
    },
    handler: () => undefined,
  };
  // Served below by hand (no token, no JSON envelope); listed here so the reference shows them.
  const operations: RouteSpec[] = [
    {
      method: "GET",
      url: "/healthz",
      tag: "operations",
      auth: false,
      summary: "Liveness and a summary: sessions, kernels alive, pool, one-shot slots",
      responses: { 200: { mediaType: "application/json", description: "status ok, or shutting_down" } },
      example: "curl http://127.0.0.1:8000/healthz",
      handler: () => undefined,
    },
    {
      method: "GET",
      url: "/metrics",
      tag: "operations",
      auth: false,
      summary: "Prometheus metrics (runcell_ prefix)",
      responses: { 200: { mediaType: "text/plain", description: "Prometheus text format" } },
      example: "curl http://127.0.0.1:8000/metrics",
      handler: () => undefined,
    },
  ];
  const documented = [...routes, wsRoute, ...operations];
  const openapi = buildOpenApi(documented, { version: deps.version });
  const openapiText = JSON.stringify(openapi);
  const docsPage = renderDocsPage(documented, openapi);

  app.get("/healthz", { config: { routeUrl: "/healthz" } }, async () => ({
    status: deps.closing() ? "shutting_down" : "ok",
    version: deps.version,
    uptime_s: Math.round((performance.now() - deps.startedAt) / 1000),
    sessions: deps.sessions.size,
    kernels_alive: deps.sessions.size + (deps.pool?.readyCount ?? 0),
    pool: deps.pool?.stats() ?? [],
    oneshot: { running: deps.oneshotSlots.running, waiting: deps.oneshotSlots.waiting },
  }));
  app.get("/metrics", { config: { routeUrl: "/metrics" } }, async (_request, reply) => {
    reply.header("content-type", deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
  app.get(
    "/api/v1/openapi.json",
    { config: { routeUrl: "/api/v1/openapi.json" } },
    async (_request, reply) => {
      reply.header("content-type", "application/json; charset=utf-8");
      return openapiText;
    },
  );
  app.get("/api/v1/docs", { config: { routeUrl: "/api/v1/docs" } }, async (_request, reply) => {
    reply.header("content-type", "text/html; charset=utf-8");
    return docsPage;
  });
  app.get("/", { config: { routeUrl: "/" } }, async (_request, reply) => {
    reply.header("content-type", "text/html; charset=utf-8");
    return docsPage;
  });
  return app;
}
