import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";

/** The content of a Jupyter connection file. */
export interface ConnectionInfo {
  /** `tcp` on loopback, or `ipc`: Unix sockets named `<ip>-<port>`, for kernels in their own network namespace. */
  transport: "tcp" | "ipc";
  ip: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
  key: string;
  signature_scheme: "hmac-sha256";
  kernel_name: string;
}

/**
 * Ports handed out recently by this process. A port is free when chosen but bound only later
 * by the kernel; without this memory two kernels starting together could be given the same
 * port (the OS reuses a just-released ephemeral port). Bounded: the oldest are forgotten.
 */
const handedOut = new Set<number>();
const HANDED_OUT_CAP = 4096;

function remember(port: number): void {
  handedOut.add(port);
  if (handedOut.size > HANDED_OUT_CAP) handedOut.delete(handedOut.values().next().value!);
}

/** Asks the OS for `count` distinct free TCP ports on `host`, never one handed out recently. */
export async function findFreePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const ports: number[] = [];
  // Each round asks for what is still missing; the OS rarely repeats a recent port, so a few
  // rounds suffice. Bounded so a pathological host cannot loop forever.
  for (let round = 0; round < 20 && ports.length < count; round++) {
    for (const port of await osFreePorts(count - ports.length, host)) {
      if (handedOut.has(port) || ports.includes(port)) continue;
      ports.push(port);
      remember(port);
    }
  }
  if (ports.length < count) throw new Error(`could not find ${count} free ports on ${host}`);
  return ports;
}

async function osFreePorts(count: number, host: string): Promise<number[]> {
  // Hold every listener open until all are chosen so the OS cannot hand out the same port twice.
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.unref();
          server.once("error", reject);
          server.listen(0, host, () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("listener has no port");
    return address.port;
  });
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/**
 * A fresh connection with a random 256-bit key: TCP ports free on loopback, or for `ipc` the
 * socket path prefix `ipcPrefix` (sockets `<prefix>-1` … `<prefix>-5`, in a directory the
 * caller owns, so nothing can collide).
 */
export async function newConnectionInfo(
  kernelName: string,
  transport: { kind: "tcp"; ip?: string } | { kind: "ipc"; ipcPrefix: string } = { kind: "tcp" },
): Promise<ConnectionInfo> {
  const ip = transport.kind === "ipc" ? transport.ipcPrefix : (transport.ip ?? "127.0.0.1");
  const ports = transport.kind === "ipc" ? [1, 2, 3, 4, 5] : await findFreePorts(5, ip);
  const [shell, iopub, stdin, control, hb] = ports as [number, number, number, number, number];
  return {
    transport: transport.kind,
    ip,
    shell_port: shell,
    iopub_port: iopub,
    stdin_port: stdin,
    control_port: control,
    hb_port: hb,
    key: randomBytes(32).toString("hex"),
    signature_scheme: "hmac-sha256",
    kernel_name: kernelName,
  };
}

/** Writes the connection file, by default readable by its owner only (it holds the signing key). */
export async function writeConnectionFile(
  dir: string,
  id: string,
  info: ConnectionInfo,
  mode = 0o600,
): Promise<string> {
  const path = join(dir, `kernel-${id}.json`);
  await writeFile(path, JSON.stringify(info, null, 1), { mode });
  return path;
}

/** The ZeroMQ endpoint of one channel: `tcp://ip:port` or `ipc://prefix-port`. */
export function endpoint(info: ConnectionInfo, port: number): string {
  return info.transport === "ipc" ? `ipc://${info.ip}-${port}` : `tcp://${info.ip}:${port}`;
}
