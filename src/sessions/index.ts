export { QuotaExceededError, SessionEndedError } from "./errors.js";
export {
  KernelLauncher,
  type KernelLauncherOptions,
  type KernelProfile,
  type LaunchedKernel,
  profileKey,
  StartupFailedError,
} from "./kernel-launcher.js";
export { KernelPool, type KernelPoolOptions, type PoolProfileStats } from "./kernel-pool.js";
export { Session, type SessionOptions } from "./session.js";
export { SessionEventLog } from "./session-event-log.js";
export { type KernelListing, SessionManager, type SessionManagerOptions } from "./session-manager.js";
export type * from "./types.js";
