export { HostSandbox } from "./host-sandbox.js";
export type { ProcessExit, Sandbox, SandboxProcess, SpawnOptions } from "./types.js";
