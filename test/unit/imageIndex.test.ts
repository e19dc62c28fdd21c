import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openDatabase, type Db } from "../../src/db/sqlite/database.js";
import { SqliteImageIndex } from "../../src/db/sqlite/images.js";
import { SqliteJobStore } from "../../src/db/sqlite/jobs.js";
import { checkImageKey, newImageKey } from "../../src/storage/imageKeys.js";
import { imageIndexContract, type IndexUnderTest } from "../contracts/imageIndexContract.js";
import { makeRequest } from "../helpers/requests.js";

describe("SqliteImageIndex", () => {
  let db: Db;
  let under: IndexUnderTest;
  beforeEach(() => {
    db = openDatabase(":memory:");
    const index = new SqliteImageIndex(db);
    const jobs = new SqliteJobStore(db, index);
    under = { index, newJob: async () => (await jobs.enqueue(makeRequest())).id };
  });
  afterEach(() => db.close());

  imageIndexContract("SQLite", () => under);
});

describe("SqliteImageIndex at 2,500 images", () => {
  let db: Db;
  let index: SqliteImageIndex;

  beforeEach(async () => {
    db = openDatabase(":memory:");
    index = new SqliteImageIndex(db);
    const jobs = new SqliteJobStore(db, index);
    for (let n = 0; n < 2500; n++) {
      const job = await jobs.enqueue({ prompt: `p${n}`, negativePrompt: null, model: { name: "m", path: "/m", refinerPath: null }, width: 512, height: 512, steps: 1, cfgScale: 7, seed: n, scheduler: null, refiner: null });
      // two images per second: ties on created_at are broken by key
      const createdAt = new Date(Date.UTC(2026, 0, 1) + Math.floor(n / 2) * 1000).toISOString();
      index.add({ key: `images/${String(n).padStart(6, "0")}.png`, jobId: job.id, createdAt, prompt: `p${n}`, model: "m", width: 512, height: 512, seed: n, metadata: {} });
    }
  });

  afterEach(() => db.close());

  it("lists newest first past 1000 images, page by page, without gaps or repeats", async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let expectedIndex = 1;
    for (;;) {
      const page = await index.latest(200, cursor);
      for (const image of page.images) {
        expect(image.index).toBe(expectedIndex++);
        seen.push(image.key);
      }
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    expect(seen).toHaveLength(2500);
    expect(seen[0]).toBe("images/002499.png");
    expect(seen.at(-1)).toBe("images/000000.png");
    expect(new Set(seen).size).toBe(2500);
  });

  it("walks the newest-first index instead of sorting the table", () => {
    const plan = db.prepare(`EXPLAIN QUERY PLAN SELECT * FROM images WHERE (created_at, key) < (?, ?) ORDER BY created_at DESC, key DESC LIMIT 36`).all("x", "y") as Array<{ detail: string }>;
    const details = plan.map((row) => row.detail).join(" | ");
    expect(details).toMatch(/images_newest/);
    expect(details).not.toMatch(/TEMP B-TREE/);
  });

  it("finds an image by listing index, 1 being the newest", async () => {
    expect((await index.atIndex(1))?.key).toBe("images/002499.png");
    expect((await index.atIndex(3))?.key).toBe("images/002497.png");
    expect(await index.atIndex(2501)).toBeUndefined();
  });
});

describe("image keys", () => {
  it("are named images/YYYYmmdd_HHMMSS_<uuid8>.png", () => {
    expect(newImageKey("images/", "3b6a1de3-82dd-45a0-8303-54b7afefe319", new Date(Date.UTC(2026, 10, 25, 9, 5, 7)))).toBe(
      "images/20261125_090507_3b6a1de3.png",
    );
  });

  it("refuses anything outside the prefix or with path tricks", () => {
    expect(() => checkImageKey("images/20261125_090507_3b6a1de3.png", "images/")).not.toThrow();
    for (const bad of ["other/a.png", "images/../x.png", "images//a.png", "images/a.json", "images/a b.png", "/images/a.png"]) {
      expect(() => checkImageKey(bad, "images/"), bad).toThrow(/key must be an image key under 'images\/'/);
    }
  });
});
