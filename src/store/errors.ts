import { RuncellError } from "../errors.js";

/** The store cannot be opened or used (permissions, a newer schema, a corrupt file). */
export class StoreError extends RuncellError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}
