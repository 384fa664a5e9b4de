import { RuncellError } from "../errors.js";

/** The session has ended (deleted, culled, its kernel stopped): it runs nothing more. */
export class SessionEndedError extends RuncellError {
  constructor(id: string, reason: string | null) {
    super("SESSION_ENDED", `session ${id} has ended (${reason ?? "ended"}); create a new session`);
  }
}

/** A per-user or server-wide cap was reached. `scope` says which. */
export class QuotaExceededError extends RuncellError<{ scope: "user" | "server" | "queue" }> {
  constructor(scope: "user" | "server" | "queue", message: string) {
    super(scope === "server" ? "AT_CAPACITY" : scope === "queue" ? "QUEUE_FULL" : "QUOTA_EXCEEDED", message, {
      data: { scope },
    });
  }
}
