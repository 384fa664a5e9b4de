/**
 * Attacks: kernel attack surface through unusual socket families: AF_NETLINK, raw IP, raw
 * packet, ICMP datagram, AF_VSOCK (HOSTILE.md #31, anchor: isolate syscall flag 2).
 *
 * Expected, per family (there is no seccomp filter, so "denied or harmless" is decided by
 * capabilities and namespaces):
 *   - raw IPv4 and AF_PACKET: EPERM (no CAP_NET_RAW in any namespace that owns a device);
 *   - ICMP datagram ("ping") sockets: EACCES (the sandbox's gid is outside ping_group_range);
 *   - AF_NETLINK: allowed but harmless — it talks to the sandbox's own network namespace,
 *     whose only link is `lo` (asserted through RTM_GETLINK as seen by if_nameindex);
 *   - AF_VSOCK: socket creation is allowed where the kernel has a vsock transport (this
 *     host: /dev/vsock exists) and fails with EAFNOSUPPORT otherwise. vsock is not
 *     network-namespaced, so on a VM it can reach the hypervisor's services; the test does
 *     not connect anywhere (that would probe the host), it only records creation — a gap
 *     reported, closable only with a seccomp filter.
 *
 * Deterministic: socket() outcomes depend only on capabilities, sysctls and loaded families.
 */
import { existsSync } from "node:fs";
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

describe("socket families", () => {
  it.skipIf(c.skip)(
    `#31 raw/packet denied, ping denied, netlink sees only lo, vsock recorded${c.label}`,
    async ({ expect }) => {
      const code = [
        "import errno, json, socket",
        "def make(*args):",
        "    try:",
        "        socket.socket(*args).close()",
        "        return 'created'",
        "    except OSError as e:",
        "        return errno.errorcode[e.errno]",
        "r = {",
        "    'raw': make(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),",
        "    'packet': make(socket.AF_PACKET, socket.SOCK_RAW, 0),",
        "    'ping': make(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),",
        "    'netlink': make(socket.AF_NETLINK, socket.SOCK_RAW, 0),",
        "    'vsock': make(socket.AF_VSOCK, socket.SOCK_STREAM),",
        "}",
        "print('FAMILIES=' + json.dumps(r))",
        "print('LINKS=' + json.dumps([name for _, name in socket.if_nameindex()]))",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e);
      expect(r.FAMILIES).toEqual({
        raw: "EPERM",
        packet: "EPERM",
        ping: "EACCES",
        netlink: "created",
        vsock: existsSync("/dev/vsock") ? "created" : "EAFNOSUPPORT",
      });
      expect(r.LINKS).toEqual(["lo"]);
      h.report("31-socket-families", e, r.FAMILIES as Record<string, unknown>);
    },
  );
});
