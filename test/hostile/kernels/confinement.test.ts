/**
 * Attacks: what a sandboxed kernel can reach. Cases, on one shared kernel started as
 * `runcell run` starts it (no network):
 *   #29 `urllib.request.urlopen('https://example.com', timeout=30)` (anchor: Piston
 *       `tests/network.py`, E2B `internetAccess.test.ts`): fails fast with URLError — `failed`,
 *       category `runtime`, never `timed_out` under a 10 s limit shorter than its own timeout.
 *   #30 a TCP server this test runs on the host's 127.0.0.1, and 169.254.169.254 (anchor:
 *       isolate `--share-net` text): ECONNREFUSED (the kernel's loopback is its own) and
 *       ENETUNREACH (no route); `lo` is the only interface.
 *   #21 `/etc/shadow`, the host's `/root`, and runcell's runtime dir (anchor: bwrap
 *       `test-run.sh`): absent inside; the kernel runs as uid 1000 with CapEff 0 and NoNewPrivs
 *       inside, and every process of the kernel's pooled host uid has CapEff 0 on the host.
 *
 * Deterministic: a network namespace holding only a loopback interface has no route anywhere,
 * so every attempt fails at once; the mounts and ids are fixed by the sandbox configuration.
 */
import { createServer, type AddressInfo, type Server } from "node:net";
import { afterAll, beforeAll, describe, it } from "vitest";
import { probeHost, probeResults } from "../harness.js";
import {
  describeExecution,
  kernelNeeds,
  procStatusField,
  type SandboxedKernel,
  useKernelHarness,
} from "./kernel-harness.js";

const host = await probeHost();
const h = useKernelHarness(host);
const c = await kernelNeeds(host);
const rooted = await kernelNeeds(host, "root");

let server: Server | undefined;
let loopbackPort = 0;
let accepted = 0;
beforeAll(async () => {
  server = createServer((socket) => {
    accepted++;
    socket.end("reached\n", () => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server!.once("error", reject);
    server!.listen({ port: 0, host: "127.0.0.1" }, resolve);
  });
  loopbackPort = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
});

let shared: SandboxedKernel | undefined;
async function sharedKernel(): Promise<SandboxedKernel> {
  shared ??= await h.start();
  // A case that failed half-way may have left it dead: the next one starts from a live kernel.
  if (shared.kernel.status === "dead") await shared.kernel.restart();
  return shared;
}

describe("sandboxed kernel confinement", () => {
  it.skipIf(c.skip)(`#29 urlopen fails fast with URLError, never timed_out${c.label}`, async ({ expect }) => {
    const k = await sharedKernel();
    const code = "import urllib.request\nurllib.request.urlopen('https://example.com', timeout=30)";
    const e = await k.executor.execute(code, { timeoutMs: 10_000 });
    expect(e.status, describeExecution(e)).toBe("failed");
    expect(e.limit).toBeNull();
    expect(e.error?.name).toBe("URLError");
    expect(e.error?.category).toBe("runtime");
    // No DNS at all: resolv.conf is not even mounted without network.
    expect(e.error?.value).toMatch(
      /Temporary failure in name resolution|Name or service not known|unreachable/,
    );
    h.report("29-kernel-no-internet", e);
  });

  it.skipIf(c.skip)(
    `#30 host loopback refused, metadata address unreachable, only lo${c.label}`,
    async ({ expect }) => {
      const k = await sharedKernel();
      const code = [
        "import errno, json, socket",
        "def attempt(address):",
        "    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)",
        "    s.settimeout(5)",
        "    try:",
        "        s.connect(address)",
        "        return s.recv(100).decode().strip()",
        "    except OSError as e:",
        "        return errno.errorcode.get(e.errno, type(e).__name__)",
        "    finally:",
        "        s.close()",
        `print('LOOPBACK=' + json.dumps(attempt(('127.0.0.1', ${loopbackPort}))))`,
        "print('METADATA=' + json.dumps(attempt(('169.254.169.254', 80))))",
        "print('IFACES=' + json.dumps([name for _, name in socket.if_nameindex()]))",
      ].join("\n");
      const e = await k.executor.execute(code, { timeoutMs: 10_000 });
      expect(e.status, describeExecution(e)).toBe("completed");
      const r = probeResults(e);
      expect(r.LOOPBACK).toBe("ECONNREFUSED");
      expect(r.METADATA).toBe("ENETUNREACH");
      expect(r.IFACES).toEqual(["lo"]);
      expect(accepted).toBe(0);
      h.report("30-kernel-host-sockets", e, { loopback: r.LOOPBACK, metadata: r.METADATA });
    },
  );

  it.skipIf(c.skip)(
    `#21 no /etc/shadow, no host /root or runtime dir; uid 1000, CapEff 0${c.label}`,
    async ({ expect }) => {
      const k = await sharedKernel();
      const code = [
        "import errno, json, os",
        "def probe(path):",
        "    try:",
        "        if os.path.isdir(path):",
        "            return sorted(os.listdir(path))",
        "        with open(path, 'rb') as f:",
        "            return 'read %d bytes' % len(f.read())",
        "    except OSError as e:",
        "        return errno.errorcode.get(e.errno, type(e).__name__)",
        "status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)",
        "print('SHADOW=' + json.dumps(probe('/etc/shadow')))",
        "print('ROOT=' + json.dumps(probe('/root')))",
        "print('SSH=' + json.dumps(probe('/root/.ssh/id_rsa')))",
        `print('RUNTIME=' + json.dumps(probe(${JSON.stringify(h.runtimeDir)})))`,
        "print('IDS=' + json.dumps([os.getuid(), os.geteuid(), os.getgid(), os.getegid()]))",
        "print('CAPEFF=' + json.dumps(status['CapEff'].strip()))",
        "print('NNP=' + json.dumps(status['NoNewPrivs'].strip()))",
      ].join("\n");
      const e = await k.executor.execute(code, { timeoutMs: 10_000 });
      expect(e.status, describeExecution(e)).toBe("completed");
      const r = probeResults(e);
      expect(r.SHADOW).toBe("ENOENT");
      expect(r.ROOT).toBe("ENOENT");
      expect(r.SSH).toBe("ENOENT");
      // Only the kernel's own socket dir is mounted, not the runtime dir around it.
      expect(r.RUNTIME).toEqual([`k-${k.kernel.id}`]);
      expect(r.IDS).toEqual([1000, 1000, 1000, 1000]);
      expect(r.CAPEFF).toBe("0000000000000000");
      expect(r.NNP).toBe("1");

      let outside: Array<{ name: string; capEff: string | null }> = [];
      if (!rooted.skip) {
        outside = k.processes().map((p) => ({ name: p.name, capEff: procStatusField(p.pid, "CapEff") }));
        expect(outside.length).toBeGreaterThan(0);
        for (const p of outside) expect(p.capEff, p.name).toBe("0000000000000000");
      }
      h.report("21-kernel-host-files", e, { probes: 4, denied: 3, host_processes: outside.length });
    },
  );
});
