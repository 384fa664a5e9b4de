export { BwrapSandbox, type BwrapSandboxOptions, SANDBOX_UID, type SandboxPolicy } from "./bwrap-sandbox.js";
export { assessHost, type HostCapabilities, probeHost } from "./capabilities.js";
export { detectCgroups, joinCgroupArgv } from "./cgroups.js";
export type {
  CgroupHandle,
  CgroupLimits,
  CgroupManager,
  CgroupStats,
  CgroupSupport,
} from "./cgroups-types.js";
export { HostSandbox } from "./host-sandbox.js";
export { DEFAULT_CEILINGS, DEFAULT_LIMITS, type ResourceLimits, resolveLimits } from "./limits.js";
export {
  type SandboxFactoryOptions,
  SandboxFactory,
  type SandboxLease,
  type SandboxMode,
} from "./sandbox-factory.js";
export type { ProcessExit, Sandbox, SandboxProcess, SpawnOptions } from "./types.js";
