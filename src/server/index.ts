export { buildApp, apiRoutes } from "./app.js";
export type { ServerDeps } from "./deps.js";
export { HttpError, toHttpError } from "./errors.js";
export { buildOpenApi } from "./openapi.js";
export { type RunningServer, startServer, type StartServerOptions } from "./runtime.js";
