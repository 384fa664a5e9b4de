import type { z } from "zod";
import type { Execution, ExecutionEvent } from "../../execution/types.js";
import type { InputFile, RunOnceOptions } from "../../runner/runner.js";
import type { ServerDeps } from "../deps.js";
import type { RouteSpec } from "../route.js";
import { ExecutionSchema, OneShotBody } from "../schemas.js";
import { synthesizeEvents } from "./executions.js";
import { refuseWhenClosing } from "./sessions.js";

export function oneshotRoutes(deps: ServerDeps): RouteSpec[] {
  return [
    {
      method: "POST",
      url: "/api/v1/execute",
      tag: "one-shot runs",
      summary: "Run code once in a fresh sandbox (python, bash or node); nothing survives the run",
      description:
        "Python runs without network, files or env start from warm pre-started interpreters. Limit hits are " +
        "data: status timed_out or failed with `limit` saying which limit ended the run.",
      body: OneShotBody,
      responses: { 200: ExecutionSchema, 400: null, 413: null, 503: null },
      example:
        "curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' " +
        '-d \'{"code": "print(1+1)"}\' http://127.0.0.1:8000/api/v1/execute',
      handler: async ({ user, body }) => {
        refuseWhenClosing(deps);
        const input = body as z.infer<typeof OneShotBody>;
        const files: InputFile[] | undefined = input.files?.map((file) => ({
          path: file.path,
          content: file.encoding === "base64" ? Buffer.from(file.content, "base64") : file.content,
        }));
        const run: RunOnceOptions = {
          language: input.language ?? "python",
          code: input.code,
          limits: {
            timeMs: input.timeout_ms,
            memoryBytes: input.memory_bytes,
            pids: input.pids,
            outputBytes: input.output_bytes,
          },
          network: input.network,
          files,
          env: input.env,
          profile: input.profile,
        };
        // A request that can never run is refused now, not after waiting in line for a slot.
        const prepared = deps.runner.prepare(run);
        const release = await deps.oneshotSlots.acquire();
        let execution: Execution;
        try {
          execution = await deps.runner.runOnce(prepared);
        } finally {
          release();
        }
        const events: ExecutionEvent[] = synthesizeEvents(execution);
        deps.store.executions.save(user.id, execution, events);
        deps.metrics.execution("oneshot", execution);
        return execution;
      },
    },
  ];
}
