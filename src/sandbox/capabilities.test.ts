import { existsSync, mkdirSync, readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { assessHost, findProgram, type HostCapabilities, probeHost } from "./capabilities.js";
import { detectCgroups } from "./cgroups.js";

// probeHost against this host's real programs, sysctls and cgroups; assessHost on made-up hosts.
const PARENT = `runcell-captest-${process.pid}`;

describe("probeHost on this host", async () => {
  const caps = await probeHost({
    path: "/usr/local/bin:/usr/bin:/bin",
    cgroupOptions: { parentName: PARENT },
  });

  it("finds bubblewrap where it is installed, with its version, and says whether it works", () => {
    const installed = existsSync("/usr/bin/bwrap");
    expect(caps.bubblewrap.path !== null).toBe(installed);
    if (installed) {
      expect(caps.bubblewrap.version).toMatch(/^\d+\.\d+/);
      expect(typeof caps.bubblewrap.works).toBe("boolean");
      if (!caps.bubblewrap.works) expect(caps.bubblewrap.error).toBeTruthy();
    } else {
      expect(caps.bubblewrap.fix).toMatch(/install.*bubblewrap/);
    }
  });

  it("reports root, the user-namespace sysctls and the real userns test consistently", async () => {
    expect(caps.root).toBe(process.getuid!() === 0);
    const ns = caps.userNamespaces;
    if (existsSync("/proc/sys/user/max_user_namespaces")) expect(ns.maxUserNamespaces).not.toBeNull();
    if (!existsSync("/proc/sys/kernel/unprivileged_userns_clone"))
      expect(ns.unprivilegedUsernsClone).toBeNull();
    if (ns.maxUserNamespaces === 0) expect(ns.unprivileged).toBe(false);
    if (ns.unprivileged === false && (ns.maxUserNamespaces === 0 || ns.unprivilegedUsernsClone === 0)) {
      expect(ns.fix).toMatch(/^sysctl -w /);
    }
    if (ns.unprivileged !== false) expect(ns.fix).toBeNull();
  });

  it("reports the same cgroup support as detectCgroups, and leaves no probe group", async () => {
    const direct = await detectCgroups({ parentName: PARENT });
    expect(caps.cgroups).toEqual(direct.support);
    for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n").filter(Boolean)) {
      const [, controllers, path] = line.split(":") as [string, string, string];
      const mounts =
        controllers === ""
          ? ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
          : controllers.split(",").map((c) => `/sys/fs/cgroup/${c}`);
      for (const mount of mounts) expect(existsSync(join(mount, path, PARENT))).toBe(false);
    }
  });

  it("finds setpriv and prlimit, or says how to install them", () => {
    for (const tool of [caps.setpriv, caps.prlimit]) {
      if (tool.path) expect(existsSync(tool.path)).toBe(true);
      else expect(tool.fix).toMatch(/util-linux/);
    }
  });

  it("reads seccomp from /proc/self/status", () => {
    expect(caps.seccomp.available).toBe(caps.seccomp.mode !== null);
    if (caps.seccomp.available && caps.seccomp.filter) expect(caps.seccomp.fix).toBeNull();
  });

  it("reuses a manager it is given instead of detecting again", async () => {
    const manager = await detectCgroups({ parentName: PARENT });
    const again = await probeHost({ cgroups: manager });
    expect(again.cgroups).toEqual(manager.support);
  });
});

describe("findProgram", () => {
  it("looks in /usr/bin first, then in PATH's absolute directories, and only at executable files", async () => {
    const dir = mkdtempSync(join(tmpdir(), "runcell-findprogram-"));
    try {
      writeFileSync(join(dir, "runcell-tool"), "#!/bin/sh\n", { mode: 0o755 });
      writeFileSync(join(dir, "runcell-data"), "not a program\n", { mode: 0o644 });
      mkdirSync(join(dir, "runcell-dir"), { mode: 0o755 });
      expect(await findProgram("runcell-tool", `/nonexistent:${dir}`)).toBe(join(dir, "runcell-tool"));
      expect(await findProgram("runcell-data", dir)).toBeNull();
      expect(await findProgram("runcell-dir", dir)).toBeNull();
      expect(await findProgram("runcell-tool", "relative/dir")).toBeNull();
      expect(await findProgram("sh", dir)).toBe("/usr/bin/sh");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A host with everything working, to be broken piece by piece. */
function goodHost(): HostCapabilities {
  return {
    bubblewrap: { path: "/usr/bin/bwrap", version: "0.8.0", works: true, error: null, fix: null },
    userNamespaces: {
      unprivileged: true,
      maxUserNamespaces: 1000,
      unprivilegedUsernsClone: 1,
      apparmorRestricted: null,
      detail: "unprivileged users can create user namespaces",
      fix: null,
    },
    root: true,
    cgroups: { version: "v2", memory: true, pids: true, cpu: true, freezer: true, notes: [] },
    setpriv: { path: "/usr/bin/setpriv", fix: null },
    prlimit: { path: "/usr/bin/prlimit", fix: null },
    seccomp: { available: true, filter: true, mode: 0, fix: null },
  };
}

const state = (caps: HostCapabilities, name: string) => assessHost(caps).checks.find((c) => c.name === name);

describe("assessHost", () => {
  it("confines code on a host where everything works, with no fixes", () => {
    const { checks, confinable } = assessHost(goodHost());
    expect(confinable).toBe(true);
    expect(checks.every((c) => c.state === "ok" && c.fix === null)).toBe(true);
  });

  it("cannot confine without bubblewrap, and names the install command", () => {
    const caps = goodHost();
    caps.bubblewrap = {
      path: null,
      version: null,
      works: false,
      error: "bwrap not found",
      fix: "apt-get install -y bubblewrap",
    };
    expect(assessHost(caps).confinable).toBe(false);
    expect(state(caps, "sandbox")).toMatchObject({ state: "missing", fix: "apt-get install -y bubblewrap" });
    expect(state(caps, "sandbox")!.detail).toContain("--sandbox none");
  });

  it("falls back to rlimits without cgroups, and still confines", () => {
    const caps = goodHost();
    caps.cgroups = {
      version: "none",
      memory: false,
      pids: false,
      cpu: false,
      freezer: false,
      notes: ["cgroup v2: no permission. Fix: systemd-run --scope -p Delegate=yes -- runcell …"],
    };
    const { confinable } = assessHost(caps);
    expect(confinable).toBe(true);
    expect(state(caps, "memory limit")).toMatchObject({ state: "fallback" });
    expect(state(caps, "memory limit")!.detail).toContain("RLIMIT_AS");
    expect(state(caps, "memory limit")!.fix).toContain("systemd-run");
    expect(state(caps, "process limit")!.detail).toContain("RLIMIT_NPROC");
    expect(state(caps, "CPU time")!.state).toBe("fallback");
    expect(state(caps, "kill tree")!.detail).toContain("PID namespace");
  });

  it("cannot confine with neither cgroups nor prlimit", () => {
    const caps = goodHost();
    caps.cgroups = { version: "none", memory: false, pids: false, cpu: false, freezer: false, notes: [] };
    caps.prlimit = { path: null, fix: "apt-get install -y util-linux" };
    expect(assessHost(caps).confinable).toBe(false);
    expect(state(caps, "memory limit")).toMatchObject({
      state: "missing",
      fix: "apt-get install -y util-linux",
    });
    expect(state(caps, "rlimits")!.state).toBe("missing");
  });

  it("needs unprivileged user namespaces only when not root and bubblewrap fails", () => {
    const caps = goodHost();
    caps.root = false;
    caps.userNamespaces = {
      ...caps.userNamespaces,
      unprivileged: false,
      unprivilegedUsernsClone: 0,
      detail: "unprivileged users cannot create user namespaces",
      fix: "sysctl -w kernel.unprivileged_userns_clone=1",
    };
    expect(state(caps, "user namespaces")!.state).toBe("fallback");
    caps.bubblewrap = { ...caps.bubblewrap, works: false, error: "setting up uid map: Permission denied" };
    expect(state(caps, "user namespaces")).toMatchObject({
      state: "missing",
      fix: "sysctl -w kernel.unprivileged_userns_clone=1",
    });
    expect(assessHost(caps).confinable).toBe(false);
  });

  it("reports missing seccomp without refusing to confine", () => {
    const caps = goodHost();
    caps.seccomp = { available: false, filter: false, mode: null, fix: "use a kernel with CONFIG_SECCOMP=y" };
    expect(state(caps, "seccomp")!.state).toBe("missing");
    expect(assessHost(caps).confinable).toBe(true);
  });
});
