import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Execution, ExecutionEvent, Output } from "../execution/types.js";

/** Mime types whose payload is binary (base64 on the wire): always kept as artifact files. */
const BINARY = /^(image\/(?!svg)|application\/(pdf|octet-stream)|audio\/|video\/)/;
/** Other payloads larger than this are kept as artifact files too. */
const LARGE_BYTES = 256 * 1024;

/** A reference left in a stored record where a payload was moved to an artifact file. */
interface ArtifactRef {
  $artifact: string;
  bytes: number;
}

function isRef(value: unknown): value is ArtifactRef {
  return typeof value === "object" && value !== null && typeof (value as ArtifactRef).$artifact === "string";
}

/**
 * Content-addressed files for large and binary outputs (plots, PDFs): a record in the database
 * keeps `{"$artifact": sha256, "bytes": n}` in their place, so the database stays small and the
 * same image stored twice takes the room of one. Readers get the record back whole.
 */
export class ArtifactFiles {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "artifacts");
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Stores `text` (the payload as it appears on the wire) and returns its hash. */
  put(text: string): string {
    const hash = createHash("sha256").update(text).digest("hex");
    const path = join(this.dir, hash);
    if (existsSync(path)) return hash;
    // Written under a temporary name, then renamed: a reader never sees half a file.
    const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
    writeFileSync(temporary, text, { mode: 0o600 });
    renameSync(temporary, path);
    return hash;
  }

  get(hash: string): string {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`not an artifact hash: ${hash}`);
    return readFileSync(join(this.dir, hash), "utf8");
  }

  /** A copy of the outputs with large and binary payloads moved to files. */
  externalize(outputs: readonly Output[]): Output[] {
    return outputs.map((output) => {
      if (output.type !== "result" && output.type !== "display") return output;
      let data: Record<string, unknown> | undefined;
      for (const [mime, value] of Object.entries(output.data)) {
        if (typeof value !== "string") continue;
        if (!BINARY.test(mime) && value.length <= LARGE_BYTES) continue;
        data ??= { ...output.data };
        data[mime] = { $artifact: this.put(value), bytes: value.length } satisfies ArtifactRef;
      }
      return data ? { ...output, data } : output;
    });
  }

  /** The outputs with every artifact reference replaced by its payload (a missing file says so). */
  internalize(outputs: readonly Output[]): Output[] {
    return outputs.map((output) => {
      if (output.type !== "result" && output.type !== "display") return output;
      let data: Record<string, unknown> | undefined;
      for (const [mime, value] of Object.entries(output.data)) {
        if (!isRef(value)) continue;
        data ??= { ...output.data };
        try {
          data[mime] = this.get(value.$artifact);
        } catch {
          data[mime] = `[artifact ${value.$artifact} is missing from ${this.dir}]`;
        }
      }
      return data ? { ...output, data } : output;
    });
  }

  externalizeExecution(execution: Execution): Execution {
    return { ...execution, outputs: this.externalize(execution.outputs) };
  }

  internalizeExecution(execution: Execution): Execution {
    return { ...execution, outputs: this.internalize(execution.outputs) };
  }

  externalizeEvents(events: readonly ExecutionEvent[]): ExecutionEvent[] {
    return mapEventOutputs(events, (outputs) => this.externalize(outputs));
  }

  internalizeEvents(events: readonly ExecutionEvent[]): ExecutionEvent[] {
    return mapEventOutputs(events, (outputs) => this.internalize(outputs));
  }
}

/** Applies `map` to every output an event carries (its own, or its record's). */
function mapEventOutputs(
  events: readonly ExecutionEvent[],
  map: (outputs: readonly Output[]) => Output[],
): ExecutionEvent[] {
  return events.map((event) => {
    if (event.type === "output") return { ...event, output: map([event.output])[0]! };
    if (event.type === "update_display")
      return { ...event, output: map([event.output])[0] as typeof event.output };
    if (event.type === "done")
      return { ...event, execution: { ...event.execution, outputs: map(event.execution.outputs) } };
    return event;
  });
}
