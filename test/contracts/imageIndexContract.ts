import { describe, expect, it } from "vitest";
import type { ImageIndex, ImageRecord } from "../../src/queue/ports.js";

/** The port, and how each backend adds a row (in production only with its job: JobStore.completeWithImages). */
export interface IndexUnderTest {
  index: ImageIndex & { add(record: ImageRecord): unknown };
  /** A job row for images to belong to (the index refers to jobs). */
  newJob(): Promise<string>;
}

const IMAGES = 300;

/** 300 images, two per second so ties on created_at are broken by key; the last job has a batch of three. */
async function fill({ index, newJob }: IndexUnderTest): Promise<{ batchJob: string }> {
  let batchJob: string | undefined;
  for (let n = 0; n < IMAGES; n++) {
    const jobId = n >= IMAGES - 3 ? (batchJob ??= await newJob()) : await newJob();
    const createdAt = new Date(Date.UTC(2026, 0, 1) + Math.floor(n / 2) * 1000).toISOString();
    await index.add({ key: `images/${String(n).padStart(6, "0")}.png`, jobId, createdAt, prompt: `p${n}`, model: "m", width: 512, height: 768, seed: 4_000_000_000 + n, metadata: { n, nested: { ok: true } } });
  }
  return { batchJob: batchJob! };
}

/** The image index test-suite both backends pass; `current()` is the empty index of the test running now. */
export function imageIndexContract(name: string, current: () => IndexUnderTest): void {
  describe(`${name}: the image index contract`, () => {
    it("lists newest first, page by page, numbering across pages, without gaps or repeats", async () => {
      await fill(current());
      const { index } = current();
      const seen: string[] = [];
      let cursor: string | undefined;
      let expectedIndex = 1;
      for (;;) {
        const page = await index.latest(40, cursor);
        for (const image of page.images) {
          expect(image.index).toBe(expectedIndex++);
          seen.push(image.key);
        }
        if (!page.nextCursor) break;
        cursor = page.nextCursor;
      }
      expect(seen).toHaveLength(IMAGES);
      expect(seen[0]).toBe("images/000299.png");
      expect(seen.at(-1)).toBe("images/000000.png");
      expect(new Set(seen).size).toBe(IMAGES);
      expect(await index.count()).toBe(IMAGES);
    });

    it("keeps every field as it was added, and adding a key again changes nothing", async () => {
      await fill(current());
      const { index } = current();
      const record = (await index.byKey("images/000007.png"))!;
      expect(record).toMatchObject({ prompt: "p7", model: "m", width: 512, height: 768, seed: 4_000_000_007, metadata: { n: 7, nested: { ok: true } } });
      await index.add({ ...record, prompt: "changed" });
      expect((await index.byKey("images/000007.png"))?.prompt).toBe("p7");
      expect(await index.count()).toBe(IMAGES);
    });

    it("finds images by listing index, by job (a batch in order), and by a key, storageUri or downloadUrl", async () => {
      const { batchJob } = await fill(current());
      const { index } = current();
      expect((await index.atIndex(1))?.key).toBe("images/000299.png");
      expect((await index.atIndex(3))?.key).toBe("images/000297.png");
      expect(await index.atIndex(IMAGES + 1)).toBeUndefined();
      expect((await index.ofJob(batchJob)).map((image) => image.key)).toEqual(["images/000297.png", "images/000298.png", "images/000299.png"]);
      expect((await index.byReference("s3://images/images/000042.png", "images/"))?.key).toBe("images/000042.png");
      expect((await index.byReference("http://127.0.0.1:9000/kitty/images/000043.png?X-Amz-Signature=abc", "images/"))?.key).toBe("images/000043.png");
      expect(await index.byReference("images/999999.png", "images/")).toBeUndefined();
    });

    it("refuses a cursor it did not hand out", async () => {
      const { index } = current();
      await expect(async () => index.latest(10, "not-a-cursor")).rejects.toThrow(/cursor is not one list_latest_images returned/);
    });
  });
}
