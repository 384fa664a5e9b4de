import type { Execution, ExecutionEvent, Output, StreamOutput } from "./types.js";

/** Where finished executions go: the store, in the server. */
export interface ExecutionSink {
  save(userId: string, execution: Execution, events?: ExecutionEvent[]): void;
}

export interface ExecutionLogOptions {
  sink: ExecutionSink;
  /** Events kept per live execution for replay; later ones still reach live subscribers. Default 10000. */
  maxEvents?: number;
}

type Listener = (event: ExecutionEvent) => void;

/** One execution that has not finished yet: its events so far and who is watching. */
export interface LiveExecution {
  readonly userId: string;
  readonly record: Execution;
  readonly events: ExecutionEvent[];
  /** True when events past `maxEvents` were not kept (the final record still has every output). */
  eventsTruncated: boolean;
  /** The execution has ended: its first save, still waiting for the turn's end, is skipped. */
  finished: boolean;
  readonly done: Promise<Execution>;
}

interface Entry extends LiveExecution {
  listeners: Set<Listener>;
  resolve: (execution: Execution) => void;
}

/**
 * The live side of executions: every event of a running execution, in order with its `seq`,
 * so a client that reconnects with a cursor gets exactly what it missed. An execution is saved
 * when it is first seen (so a crash leaves a record to close) and, with its events, when it
 * finishes; then it leaves the log and is read from the sink's store.
 */
export class ExecutionLog {
  readonly #options: Required<ExecutionLogOptions>;
  readonly #live = new Map<string, Entry>();

  constructor(options: ExecutionLogOptions) {
    this.#options = { sink: options.sink, maxEvents: options.maxEvents ?? 10_000 };
  }

  /** Executions not finished yet. */
  get size(): number {
    return this.#live.size;
  }

  /**
   * Starts recording one execution owned by `userId`: pass `onEvent` as the executor's event
   * handler, then `attach` the record it returned. Events that arrive before `attach` (the
   * executor's synchronous `queued`) are held and replayed in order.
   */
  open(userId: string): { onEvent: (event: ExecutionEvent) => void; attach: (record: Execution) => void } {
    let entry: Entry | undefined;
    const early: ExecutionEvent[] = [];
    return {
      onEvent: (event) => {
        if (entry) this.#append(entry, event);
        else early.push(event);
      },
      attach: (record) => {
        if (entry) return;
        entry = this.#begin(userId, record);
        for (const event of early.splice(0)) this.#append(entry, event);
      },
    };
  }

  #begin(userId: string, record: Execution): Entry {
    let resolve!: (execution: Execution) => void;
    const done = new Promise<Execution>((r) => {
      resolve = r;
    });
    const entry: Entry = {
      userId,
      record,
      events: [],
      eventsTruncated: false,
      finished: false,
      done,
      listeners: new Set(),
      resolve,
    };
    this.#live.set(record.id, entry);
    // Saved just after this turn: the execute request goes to the kernel first, and the record
    // is on disk long before the run could end (a crash then closes it as failed).
    setImmediate(() => {
      if (!entry.finished) this.#options.sink.save(userId, record);
    });
    return entry;
  }

  #append(entry: Entry, event: ExecutionEvent): void {
    if (event.type === "done" || entry.events.length < this.#options.maxEvents) entry.events.push(event);
    else entry.eventsTruncated = true;
    for (const listener of entry.listeners) {
      try {
        listener(event);
      } catch {
        // a subscriber's failure is its own
      }
    }
    if (event.type === "done") {
      entry.finished = true;
      entry.listeners.clear();
      // Saved before anyone is answered: a record the API calls finished is on disk.
      try {
        this.#options.sink.save(entry.userId, event.execution, entry.events);
      } finally {
        this.#live.delete(event.execution_id);
        entry.resolve(event.execution);
      }
    }
  }

  /** The live execution `id`, if it has not finished. */
  get(id: string): LiveExecution | undefined {
    return this.#live.get(id);
  }

  /**
   * The record of a live execution as it stands, with the outputs received so far (the
   * executor fills them into its record only when the execution finishes).
   */
  view(id: string): Execution | undefined {
    const entry = this.#live.get(id);
    if (!entry) return undefined;
    const last = entry.events.at(-1);
    if (last?.type === "done") return last.execution;
    let outputs: Output[] = [];
    for (const event of entry.events) {
      if (event.type === "output") outputs.push(event.output);
      else if (event.type === "clear_output") outputs = [];
      else if (event.type === "update_display") {
        outputs = outputs.map((o) =>
          o.type === "display" && o.display_id === event.display_id ? event.output : o,
        );
      }
    }
    const text = (name: "stdout" | "stderr") =>
      outputs
        .filter((o): o is StreamOutput => o.type === "stream" && o.name === name)
        .map((o) => o.text)
        .join("");
    return { ...entry.record, outputs, stdout: text("stdout"), stderr: text("stderr") };
  }

  /**
   * Sends the kept events after `afterSeq`, then every new one as it comes, until `done`.
   * Returns the unsubscribe function, or undefined when `id` is not live.
   */
  subscribe(id: string, afterSeq: number, listener: Listener): (() => void) | undefined {
    const entry = this.#live.get(id);
    if (!entry) return undefined;
    for (const event of entry.events) if (event.seq > afterSeq) listener(event);
    entry.listeners.add(listener);
    return () => entry.listeners.delete(listener);
  }
}
