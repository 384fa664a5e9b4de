import type { FastifyReply, FastifyRequest } from "fastify";

/** True when the client asked for a server-sent event stream. */
export function wantsEventStream(request: FastifyRequest): boolean {
  return (request.headers.accept ?? "").includes("text/event-stream");
}

/** An open text/event-stream response. Writes after the client left are dropped. */
export interface EventStream {
  send(event: string, data: unknown, id?: number): void;
  end(): void;
  readonly closed: boolean;
}

/**
 * Takes the response over for server-sent events. The execution it follows goes on when the
 * client leaves: it can be fetched later by id.
 */
export function openEventStream(request: FastifyRequest, reply: FastifyReply): EventStream {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-request-id": request.id,
    // Proxies such as nginx would otherwise hold events back.
    "x-accel-buffering": "no",
  });
  let closed = false;
  raw.on("close", () => {
    closed = true;
  });
  return {
    send(event, data, id) {
      if (closed) return;
      raw.write(`${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    end() {
      if (closed) return;
      closed = true;
      raw.end();
    },
    get closed() {
      return closed;
    },
  };
}
