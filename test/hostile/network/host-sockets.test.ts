/**
 * Attacks: host daemons through their Unix sockets: /var/run/docker.sock, the D-Bus system
 * and session buses, XDG runtime dirs (HOSTILE.md #32, anchor: bwrap README "Limitations").
 *
 * Expected: none of the well-known paths exists inside; a walk of the whole tree (minus /proc
 * and /sys) finds no socket file at all; no variable pointing at a bus or daemon is set.
 * (Abstract-namespace sockets are covered in no-network.test.ts: unreachable without
 * network.)
 *
 * Deterministic: the sandbox mounts no host directory that could hold a socket, except /usr
 * read-only.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

describe("host sockets", () => {
  it.skipIf(c.skip)(
    `#32 no docker.sock, no D-Bus socket, no socket file anywhere${c.label}`,
    async ({ expect }) => {
      const code = [
        "import json, os, stat",
        "paths = ['/var/run/docker.sock', '/run/docker.sock', '/run/dbus/system_bus_socket',",
        "         '/var/run/dbus/system_bus_socket', '/run/user', '/tmp/.X11-unix', '/run/containerd/containerd.sock',",
        "         '/run/podman/podman.sock', '/run/systemd/private']",
        "print('PRESENT=' + json.dumps([p for p in paths if os.path.lexists(p)]))",
        "sockets = []",
        "for root, dirs, files in os.walk('/'):",
        "    if root in ('/proc', '/sys', '/usr'):",
        "        dirs[:] = []",
        "        continue",
        "    for name in files:",
        "        p = os.path.join(root, name)",
        "        try:",
        "            if stat.S_ISSOCK(os.lstat(p).st_mode): sockets.append(p)",
        "        except OSError:",
        "            pass",
        "print('SOCKETS=' + json.dumps(sockets))",
        "keys = ['DBUS_SESSION_BUS_ADDRESS', 'DBUS_SYSTEM_BUS_ADDRESS', 'DOCKER_HOST', 'XDG_RUNTIME_DIR', 'DISPLAY', 'SSH_AUTH_SOCK']",
        "print('ENV=' + json.dumps([k for k in keys if k in os.environ]))",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e);
      expect(r.PRESENT).toEqual([]);
      expect(r.SOCKETS).toEqual([]);
      expect(r.ENV).toEqual([]);
      h.report("32-host-sockets", e, { present: 0, sockets: 0 });
    },
  );
});
