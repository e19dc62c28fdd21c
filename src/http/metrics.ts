import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Engine } from "../engines/engine.js";
import type { GenerationResult } from "../core/generation.js";
import type { ImageIndex, WorkerInfo } from "../queue/ports.js";
import type { JobQueue } from "../queue/jobQueue.js";
import type { RunObserver } from "../queue/runJob.js";

/** Seconds buckets from a warm SD 1.5 step on a GPU to a cold SDXL load on CPU. */
const SECONDS_BUCKETS = [0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];

/**
 * /metrics for Prometheus. Job and image counts are read from the database when scraped, so they hold across
 * restarts and include jobs other processes ran on this data dir; timings, runner restarts and storage retries
 * are what this process saw (it runs the jobs while it holds the worker lease).
 */
export class ServerMetrics implements RunObserver {
  readonly registry = new Registry();
  private readonly generationSeconds: Histogram<"model">;
  private readonly modelLoadSeconds: Histogram<"model">;
  private readonly storageRetries: Counter;

  /**
   * `engine`: null where this process runs no jobs (a Postgres front-end), which then has no runner metrics;
   * `workers`: the shared registry on Postgres, counted by state.
   */
  constructor(sources: { queue: JobQueue; index: ImageIndex; engine: Engine | null; workers: (() => Promise<WorkerInfo[]>) | null }) {
    const { queue, index, engine, workers } = sources;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "kitty_images_process_" });

    new Counter({
      name: "kitty_images_jobs_finished_total",
      help: "Jobs that ended, by final state (done, failed, cancelled); read from the queue's database.",
      labelNames: ["state"] as const,
      registers,
      async collect() {
        const counts = await queue.counts();
        this.reset();
        for (const state of ["done", "failed", "cancelled"] as const) this.inc({ state }, counts[state]);
      },
    });
    new Gauge({
      name: "kitty_images_queue_depth",
      help: "Jobs waiting to run.",
      registers,
      async collect() {
        this.set((await queue.counts()).queued);
      },
    });
    new Gauge({
      name: "kitty_images_jobs_running",
      help: "Jobs running now (at most one per GPU).",
      registers,
      async collect() {
        this.set((await queue.counts()).running);
      },
    });
    new Gauge({
      name: "kitty_images_running_job_progress_ratio",
      help: "Denoising steps done over steps in all, of the running job (0 when none runs).",
      registers,
      async collect() {
        const running = (await queue.active(0)).find((job) => job.state === "running");
        this.set(running?.progress ? running.progress.step / Math.max(1, running.progress.totalSteps) : 0);
      },
    });
    new Gauge({
      name: "kitty_images_images_indexed",
      help: "Images in the index (what list_latest_images and the gallery show).",
      registers,
      async collect() {
        this.set(await index.count());
      },
    });
    if (workers) {
      new Gauge({
        name: "kitty_images_workers",
        help: "GPU workers in the shared registry, by state: idle, busy, or silent (no heartbeat for 15 s).",
        labelNames: ["state"] as const,
        registers,
        async collect() {
          const counts = { idle: 0, busy: 0, silent: 0 };
          for (const worker of await workers()) counts[!worker.alive ? "silent" : worker.runningJobId ? "busy" : "idle"]++;
          for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
        },
      });
    }
    if (engine) runnerMetrics(engine, registers);
    this.storageRetries = new Counter({
      name: "kitty_images_storage_retries_total",
      help: "Storage operations (upload, start-image download) that failed and were tried again.",
      registers,
    });
    const secondsByModel = (name: string, help: string) => new Histogram({ name, help, labelNames: ["model"] as const, buckets: SECONDS_BUCKETS, registers });
    this.generationSeconds = secondsByModel("kitty_images_generation_seconds", "Denoising and decoding time of a job (all its images), by model.");
    this.modelLoadSeconds = secondsByModel(
      "kitty_images_model_load_seconds",
      "Time a job spent loading its model (and LoRAs), by model; jobs on a warm model observe nothing.",
    );
  }

  generated(model: string, result: GenerationResult): void {
    this.generationSeconds.observe({ model }, result.timings.inferenceSeconds);
    if (result.timings.loadSeconds > 0) this.modelLoadSeconds.observe({ model }, result.timings.loadSeconds);
  }

  storageRetried(): void {
    this.storageRetries.inc();
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** The engine's process as this process runs it: restarts it did not cause, and whether it is up. */
function runnerMetrics(engine: Engine, registers: Registry[]): void {
  new Counter({
    name: "kitty_images_runner_restarts_total",
    help: "Times the engine's process (the diffusers runner) died on its own and was started again.",
    registers,
    collect() {
      this.reset();
      this.inc(engine.health().restarts);
    },
  });
  new Gauge({
    name: "kitty_images_runner_up",
    help: "1 while the engine's process is started and ready.",
    registers,
    collect() {
      this.set(engine.health().state === "ready" ? 1 : 0);
    },
  });
}
