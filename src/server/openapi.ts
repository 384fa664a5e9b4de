import { z } from "zod";
import type { RouteSpec } from "./route.js";

const REF_PREFIX = "#/components/schemas/";

/** JSON Schema (2020-12, as OpenAPI 3.1 uses) of a zod schema; named schemas become component refs. */
function jsonSchema(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  const id = (z.globalRegistry.get(schema) as { id?: string } | undefined)?.id;
  if (id) return { $ref: `${REF_PREFIX}${id}` };
  const raw = z.toJSONSchema(schema, { target: "draft-2020-12", io, unrepresentable: "any" }) as Record<
    string,
    unknown
  >;
  delete raw.$schema;
  delete raw.$defs;
  return JSON.parse(JSON.stringify(raw).replaceAll('"#/$defs/', `"${REF_PREFIX}`)) as Record<string, unknown>;
}

/** Parameters of one location (path or query) from an object schema. */
function parameters(schema: z.ZodType | undefined, where: "path" | "query"): unknown[] {
  if (!schema) return [];
  const object = jsonSchema(schema, "input") as {
    properties?: Record<string, { description?: string }>;
    required?: string[];
  };
  return Object.entries(object.properties ?? {}).map(([name, property]) => ({
    name,
    in: where,
    required: where === "path" || (object.required ?? []).includes(name),
    description: property.description,
    schema: { ...property, description: undefined },
  }));
}

/** The OpenAPI 3.1 document of the routes, generated from their zod schemas. */
export function buildOpenApi(routes: RouteSpec[], info: { version: string }): Record<string, unknown> {
  const components = z.toJSONSchema(z.globalRegistry, {
    target: "draft-2020-12",
    uri: (id) => `${REF_PREFIX}${id}`,
    io: "output",
    unrepresentable: "any",
  }).schemas as Record<string, Record<string, unknown>>;
  for (const schema of Object.values(components)) {
    delete schema.$schema;
    delete schema.$id;
  }
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const responses: Record<string, unknown> = {};
    for (const [status, response] of Object.entries(route.responses)) {
      if (response === null) responses[status] = { description: "no content" };
      else if ("mediaType" in response && typeof response.mediaType === "string") {
        responses[status] = { description: response.description, content: { [response.mediaType]: {} } };
      } else {
        const content: Record<string, unknown> = {
          "application/json": { schema: jsonSchema(response as z.ZodType, "output") },
        };
        if (route.sse && status.startsWith("2"))
          content["text/event-stream"] = { schema: { type: "string" } };
        responses[status] = {
          description:
            route.sse && status.startsWith("2")
              ? `JSON; or, with Accept: text/event-stream, ${route.sse}`
              : "success",
          content,
        };
      }
    }
    if (route.auth !== false) {
      responses["401"] = {
        description: "no or bad token",
        content: { "application/json": { schema: { $ref: `${REF_PREFIX}Error` } } },
      };
    }
    responses["4XX"] ??= {
      description: "invalid request",
      content: { "application/json": { schema: { $ref: `${REF_PREFIX}Error` } } },
    };
    const operation: Record<string, unknown> = {
      summary: route.summary,
      description: route.description,
      tags: [route.tag],
      operationId: `${route.method.toLowerCase()}${route.url.replace(/[{}]/g, "").replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? "").toUpperCase())}`,
      parameters: [...parameters(route.params, "path"), ...parameters(route.query, "query")],
      responses,
      ...(route.auth === false ? { security: [] } : {}),
    };
    if (route.body) {
      operation.requestBody = {
        required: !route.bodyOptional,
        content: { "application/json": { schema: jsonSchema(route.body, "input") } },
      };
    }
    (paths[route.url] ??= {})[route.method.toLowerCase()] = operation;
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "runcell API",
      version: info.version,
      description:
        "Run code in sandboxed Jupyter kernels (sessions) and one-shot sandboxed processes. Errors are " +
        '`{"error": {"code", "message"}}`. Authenticate with `Authorization: Bearer <token>`.',
    },
    servers: [{ url: "/" }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: components,
    },
    paths,
  };
}
