/**
 * Attacks: the network. Reaching the internet (HOSTILE.md #29, anchor: Piston
 * `tests/network.py`, E2B `internetAccess.test.ts`) and reaching services on the host:
 * a TCP server this test starts on the host's 127.0.0.1, the same on the host's external
 * address, the cloud metadata address 169.254.169.254, and an abstract-namespace Unix socket
 * (where D-Bus and X11 listen) (#30, anchor: isolate `--share-net` text).
 *
 * Expected without network: urlopen fails fast with URLError — `failed`, category `runtime`,
 * never `timed_out`, well before the 5 s wall limit even though it asked for a 30 s timeout;
 * host loopback gets ECONNREFUSED (the sandbox's own empty loopback), other addresses
 * ENETUNREACH (no route at all), the abstract socket ECONNREFUSED (abstract names are per
 * network namespace); the only interface is `lo`.
 * Expected with `network: true` (opt-in): the run shares the host's network namespace, so the
 * same code reaches the host's 127.0.0.1 server and reads its token (and the abstract socket).
 *
 * Deterministic: a network namespace with only a loopback interface has no routes, so every
 * failure is immediate; the servers are the test's own, on ports the kernel picked.
 */
import { randomUUID } from "node:crypto";
import { createServer, type AddressInfo, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { afterAll, beforeAll, describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const c = needs(host, "bwrap");

const TOKEN = `token-${randomUUID()}`;
/** Node pads an abstract socket's name with NULs to the full sun_path (108 bytes). */
const ABSTRACT = `\0runcell-hostile-${randomUUID()}`;
const ABSTRACT_PADDED = ABSTRACT.padEnd(108, "\0");
const externalIp = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === "IPv4" && !a.internal)?.address;

const servers: Server[] = [];
let loopbackPort = 0;
let externalPort = 0;

function listen(server: Server, options: { port?: number; host?: string; path?: string }): Promise<Server> {
  servers.push(server);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options, () => resolve(server));
  });
}

beforeAll(async () => {
  // Closed as soon as the token is written, so no accepted socket outlives the run.
  const serve = () => createServer((socket) => socket.end(`${TOKEN}\n`, () => socket.destroy()));
  loopbackPort = ((await listen(serve(), { port: 0, host: "127.0.0.1" })).address() as AddressInfo).port;
  externalPort = ((await listen(serve(), { port: 0, host: "0.0.0.0" })).address() as AddressInfo).port;
  await listen(serve(), { path: ABSTRACT });
});
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});
// After the servers' hooks, so the runner's fd baseline already counts their sockets.
const h = useHarness(host);

/**
 * Python that tries each target and prints TARGET=<errno name or the data read>. With the
 * host's network (`all` false) only the test's own servers are tried, never anything else.
 */
function probeCode(all: boolean): string {
  const targets: Array<[string, string]> = [["LOOPBACK", `('127.0.0.1', ${loopbackPort})`]];
  if (all) targets.push(["METADATA", "('169.254.169.254', 80)"]);
  if (all && externalIp) targets.push(["EXTERNAL", `('${externalIp}', ${externalPort})`]);
  return [
    "import errno, json, socket",
    "def attempt(family, address):",
    "    s = socket.socket(family, socket.SOCK_STREAM)",
    "    s.settimeout(3)",
    "    try:",
    "        s.connect(address)",
    "        return s.recv(100).decode().strip()",
    "    except OSError as e:",
    "        return errno.errorcode.get(e.errno, type(e).__name__)",
    "    finally:",
    "        s.close()",
    ...targets.map(
      ([name, address]) => `print('${name}=' + json.dumps(attempt(socket.AF_INET, ${address})))`,
    ),
    `print('ABSTRACT=' + json.dumps(attempt(socket.AF_UNIX, ${JSON.stringify(ABSTRACT_PADDED)})))`,
    "print('INTERFACES=' + json.dumps([name for _, name in socket.if_nameindex()]))",
  ].join("\n");
}

describe.concurrent("network", () => {
  it.skipIf(c.skip)(
    `#29 urlopen fails fast with URLError: failed, not timed_out${c.label}`,
    async ({ expect }) => {
      for (const url of ["https://example.com", "http://93.184.215.14/"]) {
        const { execution: e } = await h.run({
          language: "python",
          code: `import urllib.request\nurllib.request.urlopen(${JSON.stringify(url)}, timeout=30)`,
        });
        expect(e.status, describeRun(e)).toBe("failed");
        expect(e.error?.name).toBe("URLError");
        expect(e.error?.category).toBe("runtime");
        expect(e.limit).toBeNull();
        // "Fails fast": the only wall-clock assertion, with the wall limit itself as the bound.
        expect(e.duration_ms!).toBeLessThan(SUITE_LIMITS.timeMs);
        h.report(`29-urlopen-${url.startsWith("https") ? "dns" : "ip"}`, e, { error_value: e.error?.value });
      }
    },
  );

  it.skipIf(c.skip)(
    `#30 host loopback, external address, metadata and abstract sockets are unreachable${c.label}`,
    async ({ expect }) => {
      const { execution: e } = await h.run({ language: "python", code: probeCode(true) });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e);
      expect(r.LOOPBACK).toBe("ECONNREFUSED");
      expect(r.METADATA).toBe("ENETUNREACH");
      if (externalIp) expect(r.EXTERNAL).toBe("ENETUNREACH");
      expect(r.ABSTRACT).toBe("ECONNREFUSED");
      expect(r.INTERFACES).toEqual(["lo"]);
      expect(e.stdout).not.toContain(TOKEN);
      h.report("30-no-network", e, r);
    },
  );

  it.skipIf(c.skip)(
    `network: true shares the host's namespace: the host's 127.0.0.1 server answers${c.label}`,
    async ({ expect }) => {
      const { execution: e } = await h.run({ language: "python", code: probeCode(false), network: true });
      expect(e.status, describeRun(e)).toBe("completed");
      expect(e.limits.network).toBe(true);
      const r = probeResults(e);
      expect(r.LOOPBACK).toBe(TOKEN);
      expect(r.ABSTRACT).toBe(TOKEN);
      expect(r.INTERFACES).toContain("lo");
      h.report("network-opt-in", e, r);
    },
  );
});
