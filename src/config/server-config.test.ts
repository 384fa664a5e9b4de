import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadServerConfig, serverOptions } from "./server-config.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("server configuration", () => {
  it("layers defaults < config file < RUNCELL_* variables < flags", () => {
    const dir = mkdtempSync(join(tmpdir(), "runcell-config-"));
    dirs.push(dir);
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({ port: 9000, host: "0.0.0.0", sessions: { max_per_user: 3, max_total: 7 } }),
    );
    const config = loadServerConfig(
      { port: "9100" },
      { RUNCELL_DATA_DIR: dir, RUNCELL_SESSIONS_MAX_PER_USER: "5", RUNCELL_ONESHOT_WARM: "false" },
    );
    expect(config.port).toBe(9100);
    expect(config.host).toBe("0.0.0.0");
    expect(config.sessions.max_per_user).toBe(5);
    expect(config.sessions.max_total).toBe(7);
    expect(config.oneshot.warm).toBe(false);
    expect(config.pool.size).toBe(2);
    expect(config.data_dir).toBe(dir);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("names every bad option with its variable", () => {
    expect(() =>
      loadServerConfig({}, { HOME: "/nonexistent", RUNCELL_PORT: "-1", RUNCELL_POOL_SIZE: "many" }),
    ).toThrow(/port \(RUNCELL_PORT\)[\s\S]*pool\.size \(RUNCELL_POOL_SIZE\)/);
    expect(() => loadServerConfig({ sandbox: "docker" }, { HOME: "/nonexistent" })).toThrow(/sandbox/);
  });

  it("refuses an unknown key and a malformed file, naming the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "runcell-config-"));
    dirs.push(dir);
    const file = join(dir, "c.json");
    writeFileSync(file, JSON.stringify({ prot: 1 }));
    expect(() => loadServerConfig({}, {}, file)).toThrow(/prot/);
    writeFileSync(file, "{not json");
    expect(() => loadServerConfig({}, {}, file)).toThrow(/c\.json is not valid JSON/);
    expect(() => loadServerConfig({}, {}, join(dir, "missing.json"))).toThrow(/cannot read the config file/);
  });

  it("documents every option with a variable and a description", () => {
    const options = serverOptions();
    expect(options.length).toBeGreaterThan(20);
    for (const option of options) {
      expect(option.env).toMatch(/^RUNCELL_[A-Z0-9_]+$/);
      expect(option.description.length).toBeGreaterThan(5);
    }
  });
});
