import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { newExecution } from "../execution/new-execution.js";
import { MIGRATIONS } from "./migrations.js";
import { DATABASE_FILE, openSqliteStore } from "./sqlite-store.js";

const dirs: string[] = [];
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "runcell-store-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const limits = { time_ms: 1000, memory_bytes: null, pids: null, output_bytes: null, network: null };

describe("SQLite store", () => {
  it("applies the migrations once, in WAL mode, and refuses a newer schema", () => {
    const dir = dataDir();
    openSqliteStore(dir).close();
    const db = new Database(join(dir, DATABASE_FILE));
    expect(db.pragma("user_version", { simple: true })).toBe(MIGRATIONS.length);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    expect(() => openSqliteStore(dir)).toThrow(/newer runcell/);
  });

  it("stores tokens hashed and authenticates only the exact token", () => {
    const dir = dataDir();
    const store = openSqliteStore(dir);
    const alice = store.users.ensure("alice");
    expect(store.users.ensure("alice").id).toBe(alice.id);
    const { token, info } = store.tokens.create(alice.id);
    expect(token).toMatch(/^rc_[A-Za-z0-9_-]{43}$/);
    expect(store.tokens.authenticate(token)?.name).toBe("alice");
    expect(store.tokens.authenticate(`${token.slice(0, -1)}x`)).toBeUndefined();
    expect(store.tokens.authenticate("garbage")).toBeUndefined();
    store.close();
    const raw = new Database(join(dir, DATABASE_FILE));
    const rows = raw.prepare("SELECT hash FROM tokens").all() as Array<{ hash: string }>;
    expect(rows).toHaveLength(1);
    expect(rows[0]!.hash).not.toContain(token.slice(3));
    raw.close();
    const again = openSqliteStore(dir);
    expect(again.tokens.authenticate(token)?.id).toBe(alice.id);
    expect(again.tokens.revoke(alice.id, info.id)).toBe(true);
    expect(again.tokens.authenticate(token)).toBeUndefined();
    again.close();
  });

  it("sees a token created by another process's connection at once", () => {
    const dir = dataDir();
    const server = openSqliteStore(dir);
    const cli = openSqliteStore(dir);
    const bob = cli.users.ensure("bob");
    const { token } = cli.tokens.create(bob.id);
    expect(server.tokens.authenticate(token)?.name).toBe("bob");
    cli.close();
    server.close();
  });

  it("closes what a dead server left running: executions failed with a reason, sessions ended", () => {
    const dir = dataDir();
    const store = openSqliteStore(dir);
    const user = store.users.ensure("carol");
    const running = newExecution({ language: "python", code: "while True: pass", limits });
    running.status = "running";
    running.started_at = new Date(Date.now() - 1000).toISOString();
    store.executions.save(user.id, running);
    const done = newExecution({ language: "python", code: "1", limits });
    done.status = "completed";
    store.executions.save(user.id, done, []);
    store.sessions.insert({
      id: "s1",
      user_id: user.id,
      kernel: "python3",
      mode: "write_access",
      snapshot: { id: "s1" },
      created_at: new Date().toISOString(),
      ended_at: null,
      end_reason: null,
    });
    store.close();

    const restarted = openSqliteStore(dir);
    expect(restarted.executions.failUnfinished("the server stopped", new Date().toISOString())).toBe(1);
    const closed = restarted.executions.get(running.id)!.execution;
    expect(closed.status).toBe("failed");
    expect(closed.error).toMatchObject({ name: "ServerStopped", value: "the server stopped" });
    expect(closed.duration_ms).toBeGreaterThan(0);
    expect(restarted.executions.get(done.id)!.execution.status).toBe("completed");
    expect(restarted.sessions.endAllLive("server_restarted", new Date().toISOString())).toBe(1);
    expect(restarted.sessions.get("s1")).toMatchObject({ end_reason: "server_restarted" });
    expect(restarted.sessions.listLive()).toEqual([]);
    restarted.close();
  });

  it("keeps a finished execution's events and never overwrites them with a later save without", () => {
    const store = openSqliteStore(dataDir());
    const user = store.users.ensure("dave");
    const execution = newExecution({ language: "python", code: "print(1)", limits });
    const events = [
      { seq: 1, execution_id: execution.id, type: "status" as const, status: "queued" as const },
    ];
    store.executions.save(user.id, execution, events);
    store.executions.save(user.id, { ...execution, status: "completed" });
    const stored = store.executions.get(execution.id)!;
    expect(stored.execution.status).toBe("completed");
    expect(stored.events).toEqual(events);
    store.close();
  });
});
