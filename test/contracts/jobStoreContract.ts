import { describe, expect, it } from "vitest";
import { JobTakenOver } from "../../src/queue/job.js";
import type { ImageIndex, JobStore } from "../../src/queue/ports.js";
import { makeRequest } from "../helpers/requests.js";

/** One backend's port, fresh for each test: the jobs and the index their images go to. */
export interface StoreUnderTest {
  jobs: JobStore;
  images: ImageIndex;
}

/** Completes the job with one index row written in the same transaction, as a worker does. */
const completeWithImage = ({ jobs }: StoreUnderTest, jobId: string, attempt: number, key: string) =>
  jobs.completeWithImages(jobId, attempt, [{ key, jobId, createdAt: new Date().toISOString(), prompt: "p", model: "m", width: 1, height: 1, seed: 1, metadata: {} }]);

const request = (prompt: string) => makeRequest({ prompt });

/** The job store port's test-suite, which both backends pass; `current()` is the store of the test running now (made in beforeEach). */
export function jobStoreContract(name: string, current: () => StoreUnderTest): void {
  describe(`${name}: the job store contract`, () => {
    it("hands out jobs first in, first out, and reports positions", async () => {
      const { jobs } = current();
      const a = await jobs.enqueue(request("a"));
      const b = await jobs.enqueue(request("b"));
      const c = await jobs.enqueue(request("c"));
      expect(await Promise.all([a, b, c].map((job) => jobs.position(job)))).toEqual([1, 2, 3]);
      expect((await jobs.takeNext())?.id).toBe(a.id);
      expect(await jobs.position((await jobs.get(c.id))!)).toBe(2);
      expect((await jobs.takeNext())?.id).toBe(b.id);
      expect((await jobs.takeNext())?.id).toBe(c.id);
      expect(await jobs.takeNext()).toBeUndefined();
    });

    it("keeps the request as it was given", async () => {
      const { jobs } = current();
      const given = makeRequest({ prompt: "ünïcode ✓ \"quotes\"", loras: [{ name: "ink", path: "/l/ink.safetensors", weight: 0.5 }] });
      const job = await jobs.enqueue(given);
      expect(await jobs.get(job.id)).toMatchObject({ state: "queued", attempts: 0, request: given, progress: null, cancelRequested: false, error: null });
    });

    it("fences a run that lost its job: a stale attempt can neither finish nor requeue it", async () => {
      const { jobs } = current();
      const job = await jobs.enqueue(request("fenced"));
      await jobs.takeNext();
      await jobs.recoverInterrupted(); // another worker found it cut off and put it back
      await jobs.takeNext(); // and runs it as attempt 2
      expect(await jobs.finish(job.id, "running", "done", { attempt: 1 })).toBe(false);
      expect(await jobs.requeue(job.id, { attempt: 1 })).toBe(false);
      expect(await jobs.finish(job.id, "running", "done", { attempt: 2 })).toBe(true);
    });

    it("finishes only from the state it expects", async () => {
      const { jobs } = current();
      const job = await jobs.enqueue(request("x"));
      expect(await jobs.finish(job.id, "running", "done")).toBe(false);
      await jobs.takeNext();
      expect(await jobs.finish(job.id, "running", "done")).toBe(true);
      expect(await jobs.finish(job.id, "running", "failed")).toBe(false);
      expect((await jobs.get(job.id))?.state).toBe("done");
    });

    it("refuses a transition the state machine does not allow", async () => {
      const { jobs } = current();
      const job = await jobs.enqueue(request("x"));
      await expect(async () => jobs.finish(job.id, "queued", "done")).rejects.toThrow(/forbids queued -> done/);
    });

    it("resumes a job cut off mid-run once, then fails it as interrupted", async () => {
      const { jobs } = current();
      const job = await jobs.enqueue(request("crashy"));
      await jobs.takeNext();
      expect(await jobs.recoverInterrupted()).toEqual({ resumed: [job.id], failed: [] });
      expect(await jobs.get(job.id)).toMatchObject({ state: "queued", attempts: 1 });
      await jobs.takeNext();
      expect(await jobs.recoverInterrupted()).toEqual({ resumed: [], failed: [job.id] });
      expect(await jobs.get(job.id)).toMatchObject({ state: "failed", error: { code: "interrupted" } });
    });

    it("passes a cancel mark to the running job, and a job cut off after a cancel ends cancelled, not resumed", async () => {
      const { jobs } = current();
      const job = await jobs.enqueue(request("stop me"));
      expect(await jobs.requestCancel(job.id)).toBe(false);
      await jobs.takeNext();
      await jobs.setProgress(job.id, 1, 3, 30);
      expect((await jobs.get(job.id))?.progress).toEqual({ step: 3, totalSteps: 30 });
      expect(await jobs.requestCancel(job.id)).toBe(true);
      expect(await jobs.isCancelRequested(job.id)).toBe(true);
      await jobs.recoverInterrupted();
      expect((await jobs.get(job.id))?.state).toBe("cancelled");
    });

    it("keeps a job's place in line when it is put back", async () => {
      const { jobs } = current();
      const a = await jobs.enqueue(request("a"));
      await jobs.enqueue(request("b"));
      await jobs.takeNext();
      await jobs.setProgress(a.id, 1, 2, 4);
      await jobs.requeue(a.id, { countAttempt: false });
      expect(await jobs.get(a.id)).toMatchObject({ state: "queued", attempts: 0, progress: null, startedAt: null });
      expect((await jobs.takeNext())?.id).toBe(a.id);
    });

    it("fixes the image key on the first run and keeps it on a retry", async () => {
      const { jobs } = current();
      const job = await jobs.enqueue(request("k"));
      expect(await jobs.fixImageKey(job.id, "images/first.png")).toBe("images/first.png");
      expect(await jobs.fixImageKey(job.id, "images/second.png")).toBe("images/first.png");
    });

    it("never moves a job out of a terminal state: an ended job cannot be finished, requeued, cancelled or taken", async () => {
      const { jobs } = current();
      const ended: string[] = [];
      for (const to of ["done", "failed", "cancelled"] as const) {
        const job = await jobs.enqueue(request(to));
        await jobs.takeNext();
        expect(await jobs.finish(job.id, "running", to)).toBe(true);
        ended.push(job.id);
      }
      for (const jobId of ended) {
        const before = (await jobs.get(jobId))!;
        await expect(async () => jobs.finish(jobId, before.state, "failed")).rejects.toThrow(/job state machine forbids/);
        expect(await jobs.finish(jobId, "running", "done")).toBe(false);
        expect(await jobs.requeue(jobId)).toBe(false);
        expect(await jobs.requestCancel(jobId)).toBe(false);
        expect(await jobs.recoverInterrupted()).toEqual({ resumed: [], failed: [] });
        expect(await jobs.get(jobId)).toEqual(before);
      }
      expect(await jobs.takeNext()).toBeUndefined();
      expect(await jobs.countByState()).toEqual({ queued: 0, running: 0, done: 1, failed: 1, cancelled: 1 });
    });

    it("records a done job and its index row together, or neither when another run holds the job", async () => {
      const store = current();
      const { jobs } = store;
      const job = await jobs.enqueue(request("together"));
      await jobs.takeNext();
      await jobs.recoverInterrupted();
      await jobs.takeNext(); // attempt 2 holds it now
      await expect(completeWithImage(store, job.id, 1, "images/stale.png")).rejects.toBeInstanceOf(JobTakenOver);
      expect(await store.images.count()).toBe(0);
      await completeWithImage(store, job.id, 2, "images/kept.png");
      expect(await store.images.count()).toBe(1);
      expect((await jobs.get(job.id))?.state).toBe("done");
    });

    it("announces each change once it is made: enqueued, progress, cancel requested, ended", async () => {
      const { jobs } = current();
      const seen: string[] = [];
      for (const event of ["enqueued", "progress", "cancelRequested", "ended"] as const) jobs.events.on(event, (jobId) => seen.push(`${event} ${jobId}`));
      const job = await jobs.enqueue(request("announced"));
      await jobs.takeNext();
      await jobs.setProgress(job.id, 1, 1, 4);
      await jobs.setProgress(job.id, 7, 2, 4); // a stale attempt changes nothing and announces nothing
      await jobs.requestCancel(job.id);
      await jobs.finish(job.id, "running", "cancelled");
      await jobs.finish(job.id, "running", "cancelled"); // a no-op announces nothing
      expect(seen).toEqual([`enqueued ${job.id}`, `progress ${job.id}`, `cancelRequested ${job.id}`, `ended ${job.id}`]);
    });
  });
}
