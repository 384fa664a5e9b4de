export {
  DELIMITER,
  type DecodeResult,
  decodeMessage,
  encodeMessage,
  type RejectReason,
  ReplayGuard,
} from "./codec.js";
export { type ConnectionInfo, findFreePorts, newConnectionInfo } from "./connection.js";
export { KernelDiedError, KernelStartError } from "./errors.js";
export { Heartbeat, type HeartbeatOptions } from "./heartbeat.js";
export {
  describeDeath,
  Kernel,
  type KernelDeath,
  type KernelStartOptions,
  type KernelStatus,
  type ShutdownPath,
} from "./kernel.js";
export { type ConnectionCounters, KernelConnection, type RejectedMessage } from "./kernel-connection.js";
export {
  KernelManager,
  type KernelManagerOptions,
  prepareRuntimeDir,
  type StartKernelOptions,
} from "./kernel-manager.js";
export {
  findKernelspecs,
  getKernelspec,
  jupyterDataPaths,
  type KernelspecInfo,
  type KernelspecProblem,
  kernelArgv,
} from "./kernelspec.js";
export * from "./messages.js";
export { MessageSigner } from "./signer.js";
