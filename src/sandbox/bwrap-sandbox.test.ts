import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../errors.js";
import { BwrapSandbox, SANDBOX_UID } from "./bwrap-sandbox.js";
import { DEFAULT_LIMITS } from "./limits.js";

const sandbox = (network = false, workspace?: { hostPath: string; readOnly: boolean }) =>
  new BwrapSandbox({
    policy: { limits: { ...DEFAULT_LIMITS }, network, workspace },
    cgroups: null,
    hostUid: 200_123,
  });

/** The bwrap part of the argv (everything from the bwrap binary on). */
function bwrapArgs(argv: string[]): string[] {
  return argv.slice(argv.indexOf("/usr/bin/bwrap"));
}

describe("BwrapSandbox.buildArgv", () => {
  it("unshares every namespace, drops to an unprivileged uid and dies with runcell", () => {
    const args = bwrapArgs(sandbox().buildArgv(["/usr/bin/python3", "-c", "1"]));
    for (const flag of [
      "--unshare-user",
      "--unshare-pid",
      "--unshare-net",
      "--unshare-ipc",
      "--unshare-uts",
      "--die-with-parent",
      "--new-session",
      "--disable-userns",
      "--clearenv",
    ]) {
      expect(args).toContain(flag);
    }
    expect(args).not.toContain("--share-net");
    expect(args[args.indexOf("--uid") + 1]).toBe(String(SANDBOX_UID));
    expect(args.slice(-4)).toEqual(["--", "/usr/bin/python3", "-c", "1"]);
  });

  it("lets only the fork server keep the host pid namespace and nested user namespaces", () => {
    const server = new BwrapSandbox({
      policy: { limits: { ...DEFAULT_LIMITS }, network: false, forkServer: true },
      cgroups: null,
      hostUid: 200_124,
    });
    const args = bwrapArgs(server.buildArgv(["/usr/bin/python3"]));
    expect(args).not.toContain("--unshare-pid");
    expect(args).not.toContain("--disable-userns");
    expect(args).toContain("--unshare-net");
  });

  it("passes the program's environment with --setenv, never to the launcher chain", () => {
    const argv = sandbox().buildArgv(["/bin/true"], { LD_PRELOAD: "/evil.so", FOO: "--dev-bind / /" });
    const bwrapAt = argv.indexOf("/usr/bin/bwrap");
    const i = argv.indexOf("LD_PRELOAD");
    expect(i).toBeGreaterThan(bwrapAt);
    expect(argv[i - 1]).toBe("--setenv");
    expect(argv[i + 1]).toBe("/evil.so");
    // A value that looks like a flag stays one argument, after --setenv NAME.
    expect(argv[argv.indexOf("FOO") + 1]).toBe("--dev-bind / /");
    expect(() => sandbox().buildArgv(["/bin/true"], { "BAD NAME": "x" })).toThrow(InvalidArgumentError);
  });

  it("shares the network only when the policy says so, with resolv.conf", () => {
    const args = bwrapArgs(sandbox(true).buildArgv(["/bin/true"]));
    expect(args).not.toContain("--unshare-net");
    expect(args.join(" ")).toContain("/etc/resolv.conf");
    expect(bwrapArgs(sandbox(false).buildArgv(["/bin/true"])).join(" ")).not.toContain("resolv.conf");
  });

  it("mounts a fresh tmpfs workspace, or the host directory asked for", () => {
    const fresh = bwrapArgs(sandbox().buildArgv(["/bin/true"]));
    expect(fresh[fresh.indexOf("/workspace") - 1]).toBe("--tmpfs");
    const argv = sandbox(false, { hostPath: "/data", readOnly: true }).buildArgv(
      ["/bin/true"],
      {},
      [],
      [],
      "/rt/ws-1",
    );
    // Staged as root in a private mount namespace before privileges drop, then bound read-only.
    const stage = argv.indexOf("runcell-stage");
    expect(argv.slice(stage + 1, stage + 3)).toEqual(["/data", "/rt/ws-1"]);
    expect(stage).toBeLessThan(argv.indexOf("/usr/bin/setpriv"));
    const ro = bwrapArgs(argv);
    const at = ro.indexOf("/rt/ws-1");
    expect(ro.slice(at - 1, at + 2)).toEqual(["--ro-bind", "/rt/ws-1", "/workspace"]);
    const direct = bwrapArgs(sandbox(false, { hostPath: "/data", readOnly: false }).buildArgv(["/bin/true"]));
    const d = direct.indexOf("/data");
    expect(direct.slice(d - 1, d + 2)).toEqual(["--bind", "/data", "/workspace"]);
  });

  it("sets rlimits as the pooled uid and keeps host /etc, /home and /root out", () => {
    const argv = sandbox().buildArgv(["/bin/true"]);
    const joined = argv.join(" ");
    expect(joined).toMatch(/--fsize=16777216/);
    expect(joined).toMatch(/--nofile=256/);
    expect(joined).toMatch(/--core=0/);
    const args = bwrapArgs(argv);
    expect(args).not.toContain("/home");
    expect(args).not.toContain("/root");
    expect(args).not.toContain("/etc/shadow");
    expect(args.filter((a) => a === "/etc")).toEqual([]);
  });
});
