import { CappedText, splitAtByte } from "./capped-text.js";
import type { DisplayOutput, MimeBundle, Output, StreamOutput } from "./types.js";

export interface OutputCollectorOptions {
  /** Cap on each text stream (stdout, stderr), in bytes; head and tail are kept. */
  streamBytes: number;
  /** Cap on everything else (results, displays, errors) together, in bytes. */
  richBytes: number;
}

/** What an execution's outputs add up to, ready to put on the record. */
export interface CollectedOutputs {
  stdout: string;
  stderr: string;
  outputs: Output[];
  stdout_bytes: number;
  stderr_bytes: number;
  dropped_bytes: number;
  truncated: boolean;
}

function sizeOf(value: unknown): number {
  if (typeof value === "string") return Buffer.byteLength(value);
  return Buffer.byteLength(JSON.stringify(value) ?? "");
}

/**
 * Collects an execution's outputs in display order, honouring `clear_output` and
 * `update_display_data`, within byte caps. Overflow policy: each stream keeps its head in
 * `outputs` and, at the end, one item with a drop marker and its tail; a rich output that
 * does not fit is replaced by a short text notice. `stdout`/`stderr` keep the full log
 * (capped the same way) even when the display was cleared.
 */
export class OutputCollector {
  readonly #options: OutputCollectorOptions;
  readonly #log = { stdout: new CappedText(0), stderr: new CappedText(0) };
  #outputs: Output[] = [];
  /** Bytes of each stream currently placed in `outputs`, against half the stream cap. */
  #streamInOutputs = { stdout: 0, stderr: 0 };
  #overflowed = { stdout: false, stderr: false };
  /** Where, in each stream's log, `outputs` stopped taking text (the rest is added at the end). */
  #overflowAt = { stdout: 0, stderr: 0 };
  #richBytes = 0;
  #richDropped = 0;
  #clearPending = false;

  constructor(options: OutputCollectorOptions) {
    this.#options = options;
    this.#log = { stdout: new CappedText(options.streamBytes), stderr: new CappedText(options.streamBytes) };
  }

  /** Appends stream text; returns false when it only reached the log (display cap reached). */
  addStream(name: "stdout" | "stderr", text: string): boolean {
    this.#log[name].append(text);
    this.#applyPendingClear();
    if (this.#overflowed[name]) return false;
    const room = Math.floor(this.#options.streamBytes / 2) - this.#streamInOutputs[name];
    let piece = text;
    const bytes = Buffer.byteLength(text);
    if (bytes > room) {
      piece = splitAtByte(text, room)[0];
      this.#overflowed[name] = true;
      this.#overflowAt[name] = this.#log[name].totalBytes - bytes + Buffer.byteLength(piece);
    }
    if (piece.length === 0) return false;
    this.#streamInOutputs[name] += Buffer.byteLength(piece);
    const last = this.#outputs.at(-1);
    if (last?.type === "stream" && last.name === name) last.text += piece;
    else this.#outputs.push({ type: "stream", name, text: piece });
    return true;
  }

  /** Appends a result, display or error output; returns what was stored (maybe a notice). */
  addRich(output: Exclude<Output, StreamOutput>): Output {
    this.#applyPendingClear();
    const size =
      output.type === "error" ? sizeOf(output.traceback) + sizeOf(output.value) : sizeOf(output.data);
    let stored: Output = output;
    if (this.#richBytes + size > this.#options.richBytes) {
      this.#richDropped += size;
      stored = notice(output, size, this.#options.richBytes);
    } else {
      this.#richBytes += size;
    }
    this.#outputs.push(stored);
    return stored;
  }

  /**
   * Records an output that never reached the collector (dropped on the wire for its size):
   * counts its bytes as dropped and shows an error output in its place.
   */
  addDropped(bytes: number, name: string, value: string): Output {
    this.#applyPendingClear();
    this.#richDropped += bytes;
    const output: Output = { type: "error", name, value, traceback: [`${name}: ${value}`] };
    this.#outputs.push(output);
    return output;
  }

  /** `clear_output`: with `wait`, the clear happens when the next output arrives. */
  clear(wait: boolean): void {
    if (wait) {
      this.#clearPending = true;
      return;
    }
    this.#clearNow();
  }

  /** `update_display_data`: replaces the data of every display with this id. */
  updateDisplay(
    displayId: string,
    data: MimeBundle,
    metadata: Record<string, unknown>,
  ): DisplayOutput | undefined {
    let updated: DisplayOutput | undefined;
    for (const output of this.#outputs) {
      if (output.type === "display" && output.display_id === displayId) {
        const size = sizeOf(data);
        const old = sizeOf(output.data);
        if (this.#richBytes - old + size > this.#options.richBytes) {
          this.#richDropped += size;
          continue;
        }
        this.#richBytes += size - old;
        output.data = data;
        output.metadata = metadata;
        updated = output;
      }
    }
    return updated;
  }

  #applyPendingClear(): void {
    if (this.#clearPending) {
      this.#clearPending = false;
      this.#clearNow();
    }
  }

  #clearNow(): void {
    this.#outputs = [];
    this.#streamInOutputs = { stdout: 0, stderr: 0 };
    this.#overflowed = { stdout: false, stderr: false };
    this.#richBytes = 0;
  }

  /** The outputs so far, with drop markers and stream tails appended where caps were hit. */
  snapshot(): CollectedOutputs {
    const outputs = this.#outputs.map((output) => ({ ...output }));
    for (const name of ["stdout", "stderr"] as const) {
      const log = this.#log[name];
      if (this.#overflowed[name] && log.truncated) {
        outputs.push({
          type: "stream",
          name,
          text: `\n[… ${log.droppedBytes} bytes of ${name} dropped …]\n${log.tailText()}`,
        });
      } else if (this.#overflowed[name]) {
        // The display half filled but the log kept everything: show the rest of the log.
        const rest = Buffer.from(log.toString()).subarray(this.#overflowAt[name]).toString();
        if (rest) outputs.push({ type: "stream", name, text: rest });
      }
    }
    const dropped = this.#log.stdout.droppedBytes + this.#log.stderr.droppedBytes + this.#richDropped;
    return {
      stdout: this.#log.stdout.toString(),
      stderr: this.#log.stderr.toString(),
      outputs,
      stdout_bytes: this.#log.stdout.totalBytes,
      stderr_bytes: this.#log.stderr.totalBytes,
      dropped_bytes: dropped,
      truncated: dropped > 0,
    };
  }
}

function notice(output: Exclude<Output, StreamOutput>, size: number, cap: number): Output {
  const text = `[${output.type} output of ${size} bytes dropped: over the ${cap}-byte output cap]`;
  if (output.type === "error") return { ...output, traceback: [text] };
  return { type: "display", data: { "text/plain": text }, metadata: {} };
}
