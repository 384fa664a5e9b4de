import { z } from "zod";
import type { ServerDeps } from "../deps.js";
import type { RouteSpec } from "../route.js";
import { KernelIdParams } from "../schemas.js";

const KernelSchema = z.object({
  kernel_id: z.string(),
  session_id: z.string(),
  project_id: z.string().nullable().describe("the notebook project the kernel runs, if any"),
  name: z.string(),
  status: z.string(),
  started_at: z.string(),
  last_activity_at: z.string(),
});

export function kernelRoutes(deps: ServerDeps): RouteSpec[] {
  const auth = '-H "Authorization: Bearer $TOKEN"';
  return [
    {
      method: "GET",
      url: "/api/v1/kernelspecs",
      tag: "kernels",
      summary: "Installed kernels a session can start",
      responses: {
        200: z.object({
          default: z.string(),
          kernelspecs: z.record(
            z.string(),
            z.object({ name: z.string(), display_name: z.string(), language: z.string() }),
          ),
        }),
      },
      example: `curl ${auth} http://127.0.0.1:8000/api/v1/kernelspecs`,
      handler: async () => {
        const specs = await deps.kernels.listKernelspecs();
        return {
          default: "python3",
          kernelspecs: Object.fromEntries(
            specs.map((spec) => [
              spec.name,
              { name: spec.name, display_name: spec.display_name, language: spec.language },
            ]),
          ),
        };
      },
    },
    {
      method: "GET",
      url: "/api/v1/blocks/kernels",
      tag: "kernels",
      summary: "Your running kernels (one per live session)",
      responses: { 200: z.object({ kernels: z.array(KernelSchema) }) },
      example: `curl ${auth} http://127.0.0.1:8000/api/v1/blocks/kernels`,
      handler: ({ user }) => ({
        kernels: deps.sessions
          .kernels(user.id)
          .map((k) => ({ ...k, project_id: deps.notebooks.projectForSession(k.session_id) })),
      }),
    },
    {
      method: "POST",
      url: "/api/v1/blocks/kernels/{kernel_id}/stop",
      tag: "kernels",
      summary: "Stop one of your kernels; the session it served ends (end_reason kernel_stopped)",
      params: KernelIdParams,
      responses: {
        200: z.object({ kernel_id: z.string(), session_id: z.string(), stopped: z.boolean() }),
        404: null,
      },
      example: `curl -X POST ${auth} http://127.0.0.1:8000/api/v1/blocks/kernels/$KERNEL/stop`,
      handler: async ({ user, params }) => {
        const kernelId = (params as { kernel_id: string }).kernel_id;
        const sessionId = await deps.sessions.stopKernel(user.id, kernelId);
        return { kernel_id: kernelId, session_id: sessionId, stopped: true };
      },
    },
  ];
}
