import type { FastifyError } from "fastify";
import type { ZodError } from "zod";
import { InvalidArgumentError, NotFoundError, RuncellError } from "../errors.js";

/** An error the API answers with a given status. */
export class HttpError extends RuncellError {
  readonly status: number;
  constructor(status: number, code: string, message: string) {
    super(code, message);
    this.status = status;
  }
}

/** Statuses of the domain codes that are not plain 400 (InvalidArgumentError) or 404 (NotFoundError). */
const STATUS_BY_CODE: Record<string, number> = {
  CODE_TOO_LARGE: 413,
  FILES_TOO_LARGE: 413,
  SESSION_ENDED: 409,
  QUOTA_EXCEEDED: 429,
  QUEUE_FULL: 429,
  AT_CAPACITY: 503,
  SHUTTING_DOWN: 503,
  STARTUP_CODE_FAILED: 400,
  KERNEL_START_FAILED: 503,
  BLOCK_NOT_CODE: 409,
};

/** The body of every error response. */
export interface ErrorBody {
  error: { code: string; message: string; [extra: string]: unknown };
}

/** An invalid request, with each problem named by its field path. */
export function invalidRequest(error: ZodError, where: string): HttpError {
  const problems = error.issues.slice(0, 10).map((issue) => {
    const path = issue.path.join(".");
    return `${path || where}: ${issue.message}`;
  });
  return new HttpError(400, "INVALID_REQUEST", problems.join("; "));
}

/**
 * The one error mapper of the HTTP surface: every thrown error becomes a status and
 * `{"error": {"code", "message"}}`. Unknown errors are 500 with a generic message (the details
 * go to the log, with the request id).
 */
export function toHttpError(error: unknown): { status: number; body: ErrorBody; internal: boolean } {
  if (error instanceof HttpError) return reply(error.status, error.code, error.message);
  if (error instanceof RuncellError) {
    const status =
      STATUS_BY_CODE[error.code] ??
      (error instanceof NotFoundError ? 404 : error instanceof InvalidArgumentError ? 400 : 500);
    const body = reply(status, error.code, error.message);
    if (error.code === "STARTUP_CODE_FAILED" && error.data) body.body.error.execution = error.data;
    return { ...body, internal: status >= 500 && !(error.code in STATUS_BY_CODE) };
  }
  const fastify = error as FastifyError;
  if (typeof fastify?.code === "string" && fastify.code.startsWith("FST_")) {
    switch (fastify.code) {
      case "FST_ERR_CTP_BODY_TOO_LARGE":
        return reply(413, "PAYLOAD_TOO_LARGE", `${fastify.message}; send a smaller body`);
      case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
        return reply(
          415,
          "UNSUPPORTED_MEDIA_TYPE",
          "send the body as JSON with Content-Type: application/json",
        );
      case "FST_ERR_CTP_EMPTY_JSON_BODY":
        return reply(400, "INVALID_JSON", "the body is empty; send a JSON object");
      case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
        return reply(400, "INVALID_REQUEST", fastify.message);
    }
  }
  if (error instanceof SyntaxError || fastify?.statusCode === 400) {
    return reply(400, "INVALID_JSON", `the body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof fastify?.statusCode === "number" && fastify.statusCode >= 400 && fastify.statusCode < 500) {
    return reply(fastify.statusCode, "BAD_REQUEST", fastify.message);
  }
  return {
    ...reply(500, "INTERNAL", "the server failed to handle this request; see its log"),
    internal: true,
  };
}

function reply(status: number, code: string, message: string) {
  return { status, body: { error: { code, message } } as ErrorBody, internal: false };
}
