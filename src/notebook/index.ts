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
