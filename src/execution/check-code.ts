import { InvalidArgumentError } from "../errors.js";

/** Refuses code larger than `maxBytes` with CODE_TOO_LARGE (the API answers 413). */
export function checkCode(code: string, maxBytes: number): void {
  const bytes = Buffer.byteLength(code);
  if (bytes > maxBytes) {
    throw new InvalidArgumentError("CODE_TOO_LARGE", `the code is ${bytes} bytes; the limit is ${maxBytes}`);
  }
}
