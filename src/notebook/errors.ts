import { RuncellError } from "../errors.js";

/** A notebook operation that does not fit the blocks' current state (e.g. running a markdown block). */
export class NotebookConflictError extends RuncellError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}
