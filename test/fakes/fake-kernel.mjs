#!/usr/bin/env node
/**
 * A fake Jupyter kernel speaking the wire protocol (5.3) over ZeroMQ, for tests of the engine.
 * It signs and frames messages itself (it deliberately shares no code with src/) and can
 * misbehave on demand.
 *
 * Usage: node fake-kernel.mjs -f CONNECTION_FILE [--tag=ANY]
 *
 * The code of an execute_request is a tiny command language, one command per line:
 *   print:TEXT          stream stdout "TEXT\n"
 *   write:TEXT          stream stdout "TEXT" (no newline)
 *   stderr:TEXT         stream stderr "TEXT\n"
 *   result:TEXT         execute_result with text/plain TEXT
 *   display:ID:TEXT     display_data with text/plain TEXT (transient display_id ID unless ID is empty)
 *   update:ID:TEXT      update_display_data for display_id ID
 *   clear | clear:wait  clear_output (wait false / true)
 *   error:NAME:VALUE    error output and an error reply
 *   sleep:MS            sleeps; SIGINT (or interrupt_request) raises KeyboardInterrupt
 *   hang                never replies and ignores interrupts
 *   die:CODE            writes to stderr and exits with CODE mid-run
 *   flood:N             N stream messages "line I\n"
 *   big:BYTES           one stream message carrying BYTES bytes of "x"
 *   buffers:N:BYTES     a display_data with N extra buffer frames of BYTES bytes each
 *   badsig              iopub stream with a wrong HMAC, one unsigned, a forged execute_reply on shell,
 *                       then a genuine stream "genuine\n"
 *   replay              the same signed iopub stream ("once\n") sent twice
 *   garbage             malformed multipart messages on iopub and shell (no delimiter, too few
 *                       frames, non-JSON header, header without msg_id), one of each per channel
 *   input:PROMPT        input_request on stdin, echoes the input_reply value to stdout
 *   password:PROMPT     the same with password true
 * Before each command a pending interrupt raises KeyboardInterrupt.
 *
 * Fault switches (environment):
 *   FAKE_FAIL_ON_START=1            exit 1 with a message on stderr before binding
 *   FAKE_PORT_TAKEN_ONCE=FILE       the first start (while FILE does not exist) fails with EADDRINUSE
 *   FAKE_ENV_FILE=P                 when file P exists, its KEY=VALUE lines are read at start and
 *                                   override the environment (lets a test change later starts)
 *   FAKE_STARTUP_DELAY_MS=N         wait N ms before binding
 *   FAKE_STDIN_DELAY_MS=N           bind the stdin socket N ms after the others
 *   FAKE_NO_HEARTBEAT=1             the heartbeat socket is bound but never answers
 *   FAKE_IGNORE_SHUTDOWN=1          no reply to shutdown_request, SIGTERM ignored
 *   FAKE_IGNORE_SHUTDOWN_REQUEST=1  no reply to shutdown_request (SIGTERM still ends it)
 *   FAKE_IGNORE_SIGINT=1            SIGINT ignored (interrupt_request still works)
 *   FAKE_NO_IDLE=1                  no idle status after execute_request
 */
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as zmq from "zeromq";

const env = { ...process.env };
if (env.FAKE_ENV_FILE && existsSync(env.FAKE_ENV_FILE)) {
  for (const line of readFileSync(env.FAKE_ENV_FILE, "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) env[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
}
const DELIMITER = Buffer.from("<IDS|MSG>", "latin1");
const PROTOCOL_VERSION = "5.3";

// Kernel state, declared before anything can await so the signal handlers may always read it.
let executionCount = 0;
/** The execution in progress: { interrupted, ignoreInterrupts, wake, ... }. */
let running;
/** Resolves the pending input() with the value of the next input_reply. */
let inputWaiter;

function log(text) {
  process.stderr.write(`fake-kernel[${process.pid}]: ${text}\n`);
}

function connectionFileFromArgs(argv) {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-f" || arg === "--f" || arg === "--connection-file") return argv[i + 1];
    const match = /^--?(?:f|connection-file)=(.*)$/.exec(arg);
    if (match) return match[1];
  }
  return undefined;
}

const file = connectionFileFromArgs(process.argv.slice(2));
if (!file) {
  log("usage: fake-kernel.mjs -f CONNECTION_FILE");
  process.exit(2);
}

// Fails the way a kernel does whose port was taken between choosing and binding it, as long as
// the marker file does not exist yet (so exactly the first start fails).
if (env.FAKE_PORT_TAKEN_ONCE && !existsSync(env.FAKE_PORT_TAKEN_ONCE)) {
  writeFileSync(env.FAKE_PORT_TAKEN_ONCE, "taken");
  log("zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:5555')");
  process.exit(1);
}

if (env.FAKE_FAIL_ON_START === "1") {
  log("FAKE_FAIL_ON_START is set: failing before binding any socket");
  process.exit(1);
}

const ignoreShutdown = env.FAKE_IGNORE_SHUTDOWN === "1";
const ignoreShutdownRequest = ignoreShutdown || env.FAKE_IGNORE_SHUTDOWN_REQUEST === "1";
const ignoreSigint = env.FAKE_IGNORE_SIGINT === "1";

// Signals are handled from the very start, so a SIGINT during start-up cannot kill the process.
process.on("SIGINT", () => {
  if (ignoreSigint) {
    log("SIGINT ignored (FAKE_IGNORE_SIGINT)");
    return;
  }
  interrupt("SIGINT");
});
if (ignoreShutdown) process.on("SIGTERM", () => log("SIGTERM ignored (FAKE_IGNORE_SHUTDOWN)"));

const startupDelay = Number(env.FAKE_STARTUP_DELAY_MS ?? 0);
if (startupDelay > 0) await new Promise((resolve) => setTimeout(resolve, startupDelay));

const connection = JSON.parse(readFileSync(file, "utf8"));
if (connection.signature_scheme && connection.signature_scheme !== "hmac-sha256") {
  log(`unsupported signature scheme ${connection.signature_scheme}`);
  process.exit(1);
}
const key = Buffer.from(connection.key ?? "", "utf8");
const session = randomUUID();

// ---------------------------------------------------------------- signing and framing

function sign(parts) {
  if (key.length === 0) return "";
  const hmac = createHmac("sha256", key);
  for (const part of parts) hmac.update(part);
  return hmac.digest("hex");
}

function verify(signature, parts) {
  if (key.length === 0) return true;
  const expected = Buffer.from(sign(parts), "latin1");
  return signature.length === expected.length && timingSafeEqual(signature, expected);
}

function newHeader(msgType) {
  return {
    msg_id: randomUUID(),
    session,
    username: "fake",
    date: new Date().toISOString(),
    msg_type: msgType,
    version: PROTOCOL_VERSION,
  };
}

/** Frames of one message; `signature` overrides the HMAC (to forge or leave unsigned). */
function frame(msgType, content, parent, { idents = [], signature, header } = {}) {
  const parts = [header ?? newHeader(msgType), parent ?? {}, {}, content ?? {}].map((value) =>
    Buffer.from(JSON.stringify(value)),
  );
  return [...idents, DELIMITER, Buffer.from(signature ?? sign(parts), "latin1"), ...parts];
}

/** Parses inbound frames (ROUTER identities first); returns undefined when invalid. */
function parse(frames, channel) {
  const at = frames.findIndex((f) => f.equals(DELIMITER));
  if (at < 0 || frames.length - at < 6) {
    log(`${channel}: dropped a malformed message (${frames.length} frames)`);
    return undefined;
  }
  const parts = frames.slice(at + 2, at + 6);
  if (!verify(frames[at + 1], parts)) {
    log(`${channel}: dropped a message with a bad signature`);
    return undefined;
  }
  try {
    const [header, parent, metadata, content] = parts.map((p) => JSON.parse(p.toString("utf8")));
    return { idents: frames.slice(0, at), header, parent, metadata, content };
  } catch {
    log(`${channel}: dropped a message that is not JSON`);
    return undefined;
  }
}

// ---------------------------------------------------------------- sockets

const common = { linger: 500 };
const shell = new zmq.Router(common);
const control = new zmq.Router(common);
const stdin = new zmq.Router(common);
const iopub = new zmq.Publisher({ ...common, sendHighWaterMark: 0 });
const heartbeat = new zmq.Reply(common);
const url = (port) => `${connection.transport ?? "tcp"}://${connection.ip}:${port}`;
await Promise.all([
  shell.bind(url(connection.shell_port)),
  control.bind(url(connection.control_port)),
  iopub.bind(url(connection.iopub_port)),
  heartbeat.bind(url(connection.hb_port)),
]);
const stdinDelay = Number(env.FAKE_STDIN_DELAY_MS ?? 0);
const bindStdin = () => stdin.bind(url(connection.stdin_port));
if (stdinDelay > 0) setTimeout(() => void bindStdin().catch(loopFailed("stdin bind")), stdinDelay);
else await bindStdin();

/** zeromq allows one send in flight per socket: queue the rest in order. */
function serial(socket) {
  let tail = Promise.resolve();
  return (frames) => {
    const next = tail.then(() => socket.send(frames));
    tail = next.catch(() => undefined);
    return next;
  };
}
const sendShell = serial(shell);
const sendControl = serial(control);
const sendStdin = serial(stdin);
const sendIopub = serial(iopub);

const publish = (msgType, content, parent, options) => sendIopub(frame(msgType, content, parent, options));

// ---------------------------------------------------------------- execution

class KernelException extends Error {
  constructor(ename, evalue) {
    super(evalue);
    this.ename = ename;
    this.evalue = evalue;
  }
  get traceback() {
    return [
      "\u001b[0;31m---------------------------------------------------------------------------\u001b[0m",
      `\u001b[0;31m${this.ename}\u001b[0m: ${this.evalue}`,
    ];
  }
}

const keyboardInterrupt = () => new KernelException("KeyboardInterrupt", "");

function interrupt(source) {
  if (!running) {
    log(`${source} while idle: nothing to interrupt`);
    return;
  }
  if (running.ignoreInterrupts) {
    log(`${source} ignored: the code is hanging`);
    return;
  }
  running.interrupted = true;
  running.wake?.();
}

function interruptible(ctx, register) {
  if (ctx.interrupted) return Promise.reject(keyboardInterrupt());
  return new Promise((resolve, reject) => {
    const cancel = register(resolve);
    ctx.wake = () => {
      cancel?.();
      reject(keyboardInterrupt());
    };
  }).finally(() => {
    ctx.wake = undefined;
  });
}

async function runCommand(line, ctx) {
  const colon = line.indexOf(":");
  const command = colon < 0 ? line : line.slice(0, colon);
  const arg = colon < 0 ? "" : line.slice(colon + 1);
  const { parent, idents } = ctx;
  const stream = (name, text) => publish("stream", { name, text }, parent);
  switch (command) {
    case "print":
      return stream("stdout", `${arg}\n`);
    case "write":
      return stream("stdout", arg);
    case "stderr":
      return stream("stderr", `${arg}\n`);
    case "result":
      return publish(
        "execute_result",
        { data: { "text/plain": arg }, metadata: {}, execution_count: ctx.count },
        parent,
      );
    case "display":
    case "update": {
      const split = arg.indexOf(":");
      const id = split < 0 ? arg : arg.slice(0, split);
      const text = split < 0 ? "" : arg.slice(split + 1);
      const content = { data: { "text/plain": text }, metadata: {}, transient: id ? { display_id: id } : {} };
      return publish(command === "display" ? "display_data" : "update_display_data", content, parent);
    }
    case "clear":
      return publish("clear_output", { wait: arg === "wait" }, parent);
    case "error": {
      const split = arg.indexOf(":");
      throw new KernelException(
        split < 0 ? arg || "Exception" : arg.slice(0, split),
        split < 0 ? "" : arg.slice(split + 1),
      );
    }
    case "sleep": {
      const ms = Number(arg);
      return interruptible(ctx, (resolve) => {
        const timer = setTimeout(resolve, ms);
        return () => clearTimeout(timer);
      });
    }
    case "hang":
      ctx.ignoreInterrupts = true;
      log("hanging: this execution never ends");
      return new Promise(() => undefined);
    case "die": {
      const code = Number(arg || 1);
      log(`dying mid-run with exit code ${code}`);
      process.exit(code);
      return;
    }
    case "flood": {
      const sent = [];
      for (let i = 0; i < Number(arg); i++) sent.push(stream("stdout", `line ${i}\n`));
      return Promise.all(sent);
    }
    case "big":
      return stream("stdout", "x".repeat(Number(arg)));
    case "buffers": {
      const [count, size] = arg.split(":").map(Number);
      const frames = frame("display_data", { data: { "text/plain": "with buffers" }, metadata: {} }, parent);
      for (let i = 0; i < count; i++) frames.push(Buffer.alloc(size, 0x61 + (i % 26)));
      return sendIopub(frames);
    }
    case "badsig": {
      await publish("stream", { name: "stdout", text: "forged\n" }, parent, { signature: "0".repeat(64) });
      await publish("stream", { name: "stdout", text: "unsigned\n" }, parent, { signature: "" });
      await sendShell(
        frame(
          "execute_reply",
          { status: "error", ename: "Forged", evalue: "forged reply", traceback: [] },
          parent,
          { idents, signature: "f".repeat(64) },
        ),
      );
      return stream("stdout", "genuine\n");
    }
    case "replay": {
      const frames = frame("stream", { name: "stdout", text: "once\n" }, parent);
      await sendIopub(frames);
      return sendIopub(frames);
    }
    case "garbage": {
      for (const frames of garbageMessages(parent, "iopub")) await sendIopub(frames);
      for (const frames of garbageMessages(parent, "shell")) await sendShell([...idents, ...frames]);
      return;
    }
    case "input":
    case "password": {
      if (!ctx.allowStdin) {
        throw new KernelException(
          "StdinNotImplementedError",
          "raw_input was called, but this frontend does not support input requests.",
        );
      }
      const value = await interruptible(ctx, (resolve) => {
        inputWaiter = resolve;
        void sendStdin(
          frame("input_request", { prompt: arg, password: command === "password" }, parent, { idents }),
        );
        return () => {
          inputWaiter = undefined;
        };
      });
      return stream("stdout", `${value}\n`);
    }
    case "":
      return;
    default:
      throw new KernelException("SyntaxError", `unknown command ${JSON.stringify(command)}`);
  }
}

/** Malformed messages: no delimiter, too few frames, non-JSON header, header without msg_id. */
function garbageMessages(parent, channel) {
  // Each message is signed over distinct bytes, so none is mistaken for a replay of another.
  const signedWithHeader = (headerText) => {
    const parts = [headerText, JSON.stringify(parent), "{}", "{}"].map((p) => Buffer.from(p));
    return [DELIMITER, Buffer.from(sign(parts), "latin1"), ...parts];
  };
  return [
    [Buffer.from("garbage"), Buffer.from("more garbage")],
    [DELIMITER, Buffer.from("0".repeat(64)), Buffer.from("{}")],
    signedWithHeader(`this is not JSON (${channel})`),
    signedWithHeader(JSON.stringify({ msg_type: "stream", session, channel })),
  ];
}

async function execute(request) {
  const parent = request.header;
  const content = request.content;
  const code = typeof content.code === "string" ? content.code : "";
  const silent = Boolean(content.silent);
  await publish("status", { execution_state: "busy" }, parent);
  if (!silent && content.store_history !== false) executionCount++;
  const ctx = {
    parent,
    idents: request.idents,
    allowStdin: Boolean(content.allow_stdin),
    count: executionCount,
    interrupted: false,
    ignoreInterrupts: false,
    wake: undefined,
  };
  running = ctx;
  if (!silent) await publish("execute_input", { code, execution_count: executionCount }, parent);
  let reply;
  try {
    for (const line of code.split("\n")) {
      if (ctx.interrupted) throw keyboardInterrupt();
      await runCommand(line, ctx);
    }
    reply = { status: "ok", execution_count: executionCount, user_expressions: {}, payload: [] };
  } catch (error) {
    if (!(error instanceof KernelException)) throw error;
    const { ename, evalue, traceback } = error;
    await publish("error", { ename, evalue, traceback }, parent);
    reply = { status: "error", execution_count: executionCount, ename, evalue, traceback };
  } finally {
    running = undefined;
  }
  await sendShell(frame("execute_reply", reply, parent, { idents: request.idents }));
  if (env.FAKE_NO_IDLE !== "1") await publish("status", { execution_state: "idle" }, parent);
}

async function kernelInfo(request) {
  const parent = request.header;
  await publish("status", { execution_state: "busy" }, parent);
  await sendShell(
    frame(
      "kernel_info_reply",
      {
        status: "ok",
        protocol_version: PROTOCOL_VERSION,
        implementation: "fake-kernel",
        implementation_version: "1.0.0",
        language_info: { name: "fake", version: "1.0", file_extension: ".fake", mimetype: "text/x-fake" },
        banner: "a fake kernel for tests",
        help_links: [],
      },
      parent,
      { idents: request.idents },
    ),
  );
  await publish("status", { execution_state: "idle" }, parent);
}

// ---------------------------------------------------------------- channels

/** Shell requests are handled one at a time, like a real kernel's main thread. */
async function shellLoop() {
  let queue = Promise.resolve();
  for await (const frames of shell) {
    const request = parse(frames, "shell");
    if (!request) continue;
    queue = queue
      .then(async () => {
        switch (request.header.msg_type) {
          case "execute_request":
            return execute(request);
          case "kernel_info_request":
            return kernelInfo(request);
          default:
            log(`shell: ignoring ${request.header.msg_type}`);
        }
      })
      .catch((error) => log(`shell: ${request.header.msg_type} failed: ${error?.stack ?? error}`));
  }
}

async function controlLoop() {
  for await (const frames of control) {
    const request = parse(frames, "control");
    if (!request) continue;
    const type = request.header.msg_type;
    if (type === "interrupt_request") {
      interrupt("interrupt_request");
      await sendControl(
        frame("interrupt_reply", { status: "ok" }, request.header, { idents: request.idents }),
      );
    } else if (type === "shutdown_request") {
      if (ignoreShutdownRequest) {
        log("shutdown_request ignored");
        continue;
      }
      const restart = Boolean(request.content.restart);
      await sendControl(
        frame("shutdown_reply", { status: "ok", restart }, request.header, { idents: request.idents }),
      );
      shutdown();
      return;
    } else if (type === "kernel_info_request") {
      await kernelInfo(request);
    } else {
      log(`control: ignoring ${type}`);
    }
  }
}

async function stdinLoop() {
  for await (const frames of stdin) {
    const message = parse(frames, "stdin");
    if (!message) continue;
    if (message.header.msg_type === "input_reply" && inputWaiter) {
      const resolve = inputWaiter;
      inputWaiter = undefined;
      resolve(String(message.content.value ?? ""));
    }
  }
}

async function heartbeatLoop() {
  if (env.FAKE_NO_HEARTBEAT === "1") {
    log("heartbeat disabled (FAKE_NO_HEARTBEAT): pings are never answered");
    return;
  }
  for await (const frames of heartbeat) await heartbeat.send(frames);
}

function shutdown() {
  log("shutting down");
  // At exit ZeroMQ flushes what the closed sockets still hold (the reply), bounded by linger.
  for (const socket of [shell, control, stdin, iopub, heartbeat]) socket.close();
  process.exit(0);
}

function loopFailed(name) {
  return (error) => {
    if (error?.code === "EAGAIN" || shell.closed) return;
    log(`${name} loop failed: ${error?.stack ?? error}`);
    process.exit(70);
  };
}

shellLoop().catch(loopFailed("shell"));
controlLoop().catch(loopFailed("control"));
stdinLoop().catch(loopFailed("stdin"));
heartbeatLoop().catch(loopFailed("heartbeat"));
log(`listening (shell ${connection.shell_port}, iopub ${connection.iopub_port})`);
