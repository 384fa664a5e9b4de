export { CappedText, splitAtByte } from "./capped-text.js";
export { categorizeException, stripAnsi } from "./classify.js";
export {
  type ExecuteOptions,
  KernelExecutor,
  type KernelExecutorOptions,
  type StdinSource,
} from "./kernel-executor.js";
export { type CollectedOutputs, OutputCollector, type OutputCollectorOptions } from "./output-collector.js";
export * from "./types.js";
export { newExecution } from "./new-execution.js";
