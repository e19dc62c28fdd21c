import Database from "better-sqlite3";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/sqlite/database.js";
import { MIGRATIONS } from "../../src/db/sqlite/migrations.js";

describe("database migrations", () => {
  it("carries images written before batches into the table where a job may own several", () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), "kitty-db-")), "old.sqlite");
    const old = new Database(file);
    for (const step of MIGRATIONS.slice(0, 2)) old.exec(step);
    old.pragma("user_version = 2");
    old.prepare(`INSERT INTO jobs (id, state, request, created_at) VALUES ('job-1', 'done', '{}', '2026-11-01T00:00:00Z')`).run();
    const insertImage = `INSERT INTO images (key, job_id, created_at, prompt, model, width, height, seed, metadata) VALUES (?, 'job-1', ?, 'p', 'm', 64, 64, 1, '{}')`;
    old.prepare(insertImage).run("images/a.png", "2026-11-01T00:00:01Z");
    expect(() => old.prepare(insertImage).run("images/a_2.png", "2026-11-01T00:00:02Z")).toThrow(/UNIQUE constraint failed: images.job_id/);
    old.close();

    const db = openDatabase(file);
    expect(db.pragma("user_version", { simple: true })).toBe(MIGRATIONS.length);
    expect(db.prepare(`SELECT key FROM images`).all()).toEqual([{ key: "images/a.png" }]);
    db.prepare(insertImage).run("images/a_2.png", "2026-11-01T00:00:02Z");
    expect(db.prepare(`SELECT key FROM images WHERE job_id = 'job-1' ORDER BY created_at`).all()).toEqual([{ key: "images/a.png" }, { key: "images/a_2.png" }]);
    db.close();
  });
});
