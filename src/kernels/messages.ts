/**
 * The Jupyter messaging protocol (version 5.3) as types: the header, the channels and the
 * content of every message runcell sends or consumes. Unknown message types are tolerated
 * (ignored by consumers), as the spec asks of clients.
 */

export const PROTOCOL_VERSION = "5.3";

/** The four message channels; the heartbeat is raw bytes and not a message channel. */
export type Channel = "shell" | "iopub" | "stdin" | "control";

export interface MessageHeader {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
  subshell_id?: string | null;
}

/** A decoded message. `parent_header` is `{}` when the message answers nothing. */
export interface JupyterMessage<TContent = Record<string, unknown>> {
  channel: Channel;
  header: MessageHeader;
  parent_header: Partial<MessageHeader>;
  metadata: Record<string, unknown>;
  content: TContent;
  buffers: Buffer[];
}

/** Kernel execution state as published on iopub `status`. */
export type ExecutionState = "starting" | "idle" | "busy" | "restarting" | "dead";

export interface ExecuteRequestContent {
  code: string;
  silent: boolean;
  store_history: boolean;
  user_expressions: Record<string, string>;
  allow_stdin: boolean;
  stop_on_error: boolean;
}

export type ReplyStatus = "ok" | "error" | "aborted";

export interface ExecuteReplyContent {
  status: ReplyStatus;
  execution_count?: number | null;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}

export interface KernelInfoReplyContent {
  status: ReplyStatus;
  protocol_version: string;
  implementation: string;
  implementation_version?: string;
  language_info: { name: string; version?: string; file_extension?: string; mimetype?: string };
  banner?: string;
}

export interface StatusContent {
  execution_state: ExecutionState;
}

export interface StreamContent {
  name: "stdout" | "stderr";
  text: string;
}

export interface DisplayDataContent {
  data: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  transient?: { display_id?: string };
}

export interface ExecuteResultContent extends DisplayDataContent {
  execution_count: number | null;
}

export interface ErrorContent {
  ename: string;
  evalue: string;
  traceback: string[];
}

export interface ClearOutputContent {
  wait: boolean;
}

export interface InputRequestContent {
  prompt: string;
  password: boolean;
}

export interface ShutdownRequestContent {
  restart: boolean;
}

/** Requests runcell sends, keyed by msg_type, with the reply type each expects. */
export interface RequestCatalogue {
  execute_request: { channel: "shell"; content: ExecuteRequestContent; reply: ExecuteReplyContent };
  kernel_info_request: { channel: "shell"; content: Record<string, never>; reply: KernelInfoReplyContent };
  interrupt_request: { channel: "control"; content: Record<string, never>; reply: { status: ReplyStatus } };
  shutdown_request: { channel: "control"; content: ShutdownRequestContent; reply: ShutdownRequestContent };
}

export type RequestType = keyof RequestCatalogue;

/** The reply message type of a request type: `execute_request` → `execute_reply`. */
export function replyTypeOf(requestType: string): string {
  return requestType.replace(/_request$/, "_reply");
}
