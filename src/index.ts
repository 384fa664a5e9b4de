/**
 * runcell: run code in real Jupyter kernels over ZeroMQ, from TypeScript.
 *
 * @example
 * const manager = KernelManager.fromConfig(loadConfig(), new HostSandbox());
 * const kernel = await manager.start({ name: "python3" });
 * const executor = new KernelExecutor(kernel);
 * const execution = await executor.execute("print(1 + 1)");
 * await manager.disposeAll();
 */
export { loadConfig, type RuncellConfig } from "./config/config.js";
export { AbortedError, InvalidArgumentError, NotFoundError, RuncellError, TimeoutError } from "./errors.js";
export * from "./execution/index.js";
export * from "./kernels/index.js";
export * from "./notebook/index.js";
export * from "./sandbox/index.js";
export * from "./runner/index.js";
