export {
  executionMetadata,
  fromNbOutputs,
  joinSource,
  type NbOutput,
  type Notebook,
  type NotebookCell,
  serializeNotebook,
  toNbOutputs,
} from "./ipynb.js";
export { parseNotebook, validateNotebook } from "./parse-notebook.js";
export {
  notebookKernelName,
  type RunNotebookOptions,
  type RunNotebookResult,
  runNotebook,
} from "./run-notebook.js";
export { type DefUse, PythonAnalyzer } from "./def-use.js";
export { NotebookConflictError } from "./errors.js";
export { type ContextBlock, type ContextOptions, elide, renderContext } from "./llm-context.js";
export { notebookToBlocks, projectToNotebook } from "./project-ipynb.js";
export { type BlockInfo, type BlockRunResult, NotebookService, type ProjectView } from "./project-service.js";
export { type BlockDeps, dependentsOf, upstreamOf } from "./staleness.js";
