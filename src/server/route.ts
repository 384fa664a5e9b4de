import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { z } from "zod";
import type { UserInfo } from "../store/types.js";
import { HttpError, invalidRequest } from "./errors.js";

/** What a handler gets: the authenticated user (when the route needs one) and parsed input. */
export interface RouteContext<P, Q, B> {
  request: FastifyRequest;
  reply: FastifyReply;
  user: UserInfo;
  params: P;
  query: Q;
  body: B;
}

/** One route: its contract (for validation and the OpenAPI document) and its handler. */
export interface RouteSpec<P = unknown, Q = unknown, B = unknown> {
  method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE";
  url: string;
  summary: string;
  description?: string;
  tag: string;
  /** Requires a bearer token. Default true. */
  auth?: boolean;
  params?: z.ZodType<P>;
  query?: z.ZodType<Q>;
  body?: z.ZodType<B>;
  /** The body may be left out (it then reads as `{}`). */
  bodyOptional?: boolean;
  /** Documented responses: status → schema (null: no body), or a media type and a description. */
  responses: Record<number, z.ZodType | null | { mediaType: string; description: string }>;
  /** Also answers `Accept: text/event-stream` with a stream (documented). */
  sse?: string;
  /** A curl example for the reference page. */
  example?: string;
  handler(context: RouteContext<P, Q, B>): unknown;
}

/** Reads the caller's bearer token: `Authorization: Bearer …`, else `?token=` (browsers' WebSockets). */
export function presentedToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match?.[1];
  }
  const query = request.query as Record<string, unknown> | undefined;
  return typeof query?.token === "string" ? query.token : undefined;
}

export type Authenticate = (request: FastifyRequest) => UserInfo;

/** Registers routes on Fastify, validating params, query and body with their zod schemas. */
export function registerRoutes(app: FastifyInstance, routes: RouteSpec[], authenticate: Authenticate): void {
  for (const route of routes) {
    app.route({
      method: route.method,
      url: route.url.replace(/\{(\w+)\}/g, ":$1"),
      config: { routeUrl: route.url },
      handler: async (request, reply) => {
        const user = route.auth === false ? (undefined as unknown as UserInfo) : authenticate(request);
        const params = parse(route.params, request.params, "path");
        const query = parse(route.query, request.query, "query");
        let body: unknown = undefined;
        if (route.body) {
          if ((request.body === undefined || request.body === null) && !route.bodyOptional) {
            throw new HttpError(400, "INVALID_REQUEST", "the body is missing: send a JSON object");
          }
          body = parse(route.body, request.body ?? {}, "body");
        }
        return route.handler({ request, reply, user, params, query, body });
      },
    });
  }
}

function parse<T>(schema: z.ZodType<T> | undefined, value: unknown, where: string): T {
  if (!schema) return value as T;
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw invalidRequest(result.error, where);
  return result.data;
}
