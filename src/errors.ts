/**
 * The one error family of runcell. User-code failures and limit hits are never thrown: they are
 * data on the Execution record. These errors are for misuse and for infrastructure failures.
 */
export class RuncellError<TData = unknown> extends Error {
  /** A stable, upper-case code, e.g. `KERNEL_NOT_FOUND`; surfaces map it to status codes. */
  readonly code: string;
  /** Optional structured detail for callers that branch on it. */
  readonly data: TData | undefined;

  constructor(code: string, message: string, options?: { data?: TData; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.data = options?.data;
  }
}

/** A named thing (kernelspec, file, session…) does not exist. */
export class NotFoundError extends RuncellError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** The caller passed something unusable; the message says what to pass instead. */
export class InvalidArgumentError extends RuncellError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** A bounded wait ran out. */
export class TimeoutError extends RuncellError {
  constructor(message: string, code = "TIMEOUT") {
    super(code, message);
  }
}

/** The caller's AbortSignal fired. */
export class AbortedError extends RuncellError {
  constructor(message = "the operation was aborted") {
    super("ABORTED", message);
  }
}
