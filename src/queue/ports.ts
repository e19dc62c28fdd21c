// The one port between the queue and its database. SQLite (one machine) and Postgres (a studio's GPU hosts)
// each implement it in db/; the contract suites in test/contracts/ hold both to it. Every call is async, so
// nothing above this line knows which database answers.
import type { EngineName, GenerationRequest, ModelFamily } from "../core/generation.js";
import type { JobEvents } from "./jobEvents.js";
import type { Job, JobError, JobState } from "./job.js";

/** One image as the index holds it: enough to list, select and page without reading storage. */
export interface ImageRecord {
  key: string;
  jobId: string;
  createdAt: string;
  prompt: string;
  model: string;
  width: number;
  height: number;
  seed: number;
  metadata: Record<string, unknown>;
}

/** A page of the listing, newest first; `index` numbers the whole listing from 1 (the newest image). */
export interface ImagePage {
  images: Array<ImageRecord & { index: number }>;
  nextCursor: string | null;
}

/** What the doors read of the stored images. Images are added with their job (JobStore.completeWithImages). */
export interface ImageIndex {
  /** Newest first, in O(limit) whatever the table holds. */
  latest(limit: number, cursor?: string): Promise<ImagePage>;
  /** A scan: for /metrics and the gallery's page count, not per listing. */
  count(): Promise<number>;
  byKey(key: string): Promise<ImageRecord | undefined>;
  /** A job's images in the order they were made. */
  ofJob(jobId: string): Promise<ImageRecord[]>;
  /** The image a key, an imageRef's storageUri or its downloadUrl names. */
  byReference(reference: string, keyPrefix: string): Promise<ImageRecord | undefined>;
  /** 1 = the newest image, as list_latest_images numbers them. */
  atIndex(index: number): Promise<ImageRecord | undefined>;
}

/**
 * An image a user brought (a pasted data: URL, a local file, a fetched URL): stored as a PNG under the uploads
 * prefix with a sidecar of its own, and indexed apart, so list_latest_images shows only what was made.
 */
export interface UploadRecord {
  key: string;
  createdAt: string;
  width: number;
  height: number;
  /** The upload's sidecar (images/uploads.ts): where it came from, its bytes and format. */
  metadata: Record<string, unknown>;
}

export interface UploadIndex {
  /** An upload already indexed (the same bytes brought again) is left as it is. */
  add(record: UploadRecord): Promise<void>;
  byKey(key: string): Promise<UploadRecord | undefined>;
  /** Newest first. */
  latest(limit: number): Promise<UploadRecord[]>;
}

/**
 * An MCP task (a tools/call a client asked to run as a task): the job it stands for, and how long it is kept. The
 * task's state is the job's, never stored twice; only a 2025-11-25 cancel, which must end the task at once even while
 * the job finishes its step, is recorded here. Expired tasks are forgotten; their job and images are not.
 */
export interface TaskRecord {
  /** The job's id: one task per job, so an agent may also ask job_status. */
  taskId: string;
  tool: string;
  createdAt: string;
  ttlMs: number;
  cancelled: boolean;
}

export interface TaskIndex {
  add(record: TaskRecord): Promise<void>;
  /** The task, unless it has expired by `now`. */
  get(taskId: string, now: Date): Promise<TaskRecord | undefined>;
  markCancelled(taskId: string): Promise<void>;
  /** Unexpired tasks, newest first, after the one named by `after` (a page's last). */
  page(now: Date, limit: number, after?: { createdAt: string; taskId: string }): Promise<TaskRecord[]>;
  /** Drops the records of tasks expired by `now`; returns how many. */
  forgetExpired(now: Date): Promise<number>;
}

/** What a worker can run beyond a model: a refiner pass only where it has the model's refiner, LoRAs it has. */
export interface WorkerCapabilities {
  refiners: readonly string[];
  loras: readonly string[];
}

/**
 * Who takes a job, and what fences it. SQLite: only while `leaseOwner` holds the queue's lease. Postgres: only
 * jobs for `models`, and a refiner pass or LoRAs only where `can` says the worker has them. Absent: anything.
 */
export interface JobTaker {
  leaseOwner?: string;
  workerId?: string;
  models?: readonly string[];
  can?: WorkerCapabilities;
}

export interface FinishOptions {
  error?: JobError;
  /** Fences a run that lost the job: only the run with this attempt number may end it. */
  attempt?: number;
}

/**
 * The durable FIFO and its state machine (queue/job.ts). Every change is one guarded write, so a job is never taken
 * twice, and is announced on `events` once committed (to this process; other processes poll or hear a channel).
 */
export interface JobStore {
  readonly events: JobEvents;
  enqueue(request: GenerationRequest): Promise<Job>;
  get(jobId: string): Promise<Job | undefined>;
  /** 1 = next to run (over all workers). Only meaningful for a queued job. */
  position(job: Job): Promise<number>;
  /** How many jobs are in each state (states with none are 0). */
  countByState(): Promise<Record<JobState, number>>;
  /** The running job(s), then up to `queuedLimit` queued jobs in the order they will run. */
  active(queuedLimit: number): Promise<Job[]>;
  /** Takes the oldest queued job `taker` may run and marks it running; undefined when there is none. */
  takeNext(taker?: JobTaker): Promise<Job | undefined>;
  /** The first run fixes the key; a retry keeps it. */
  fixImageKey(jobId: string, proposedKey: string): Promise<string>;
  /** Moves a job to a terminal state; false when it was no longer in `from` or another run holds it now. */
  finish(jobId: string, from: JobState, to: "done" | "failed" | "cancelled", how?: FinishOptions): Promise<boolean>;
  /** Marks the job done and indexes its images in one transaction; throws JobTakenOver when another run holds it. */
  completeWithImages(jobId: string, attempt: number, images: readonly ImageRecord[]): Promise<void>;
  /** Advisory: a refused write rejects, and the run goes on. */
  setProgress(jobId: string, attempt: number, step: number, totalSteps: number): Promise<void>;
  /** Marks a running job for cancellation; whoever runs it reads the mark. */
  requestCancel(jobId: string): Promise<boolean>;
  isCancelRequested(jobId: string): Promise<boolean>;
  /** Puts a running job back at its place in line; `countAttempt: false` when nothing ran. */
  requeue(jobId: string, how?: { countAttempt?: boolean; attempt?: number }): Promise<boolean>;
  /**
   * Jobs whose run was cut off (their process or host died): each gets one more run, one that had its retry fails
   * as `interrupted`, one marked for cancel ends cancelled. `staleMs`: how long a silent host still counts as alive
   * (Postgres; on SQLite the caller holds the lease, so every running job was cut off).
   */
  recoverInterrupted(staleMs?: number): Promise<{ resumed: string[]; failed: string[] }>;
  /**
   * A done job for images found in storage that the database does not know (reindex), with their index rows, in
   * one transaction. A job that exists is left as it is; so is an image already indexed.
   */
  insertRecovered(request: GenerationRequest, images: readonly ImageRecord[]): Promise<void>;
}

/** The SQLite queue's one runner: the process holding this lease runs the jobs; every other one only queues. */
export interface QueueLease {
  readonly owner: string;
  tryAcquire(): Promise<boolean>;
  /** False when the lease was lost (this process stalled and another took over). */
  heartbeat(): Promise<boolean>;
  /** Who runs the queue, and why it waits if it does (read by every process for job_status). */
  holder(): Promise<{ pid: number; notice: string | null } | undefined>;
  setNotice(notice: string | null): Promise<void>;
  release(): Promise<void>;
}

/** What a worker tells front-ends of one model it has: enough to fill a request's defaults and check its refiner. */
export interface AdvertisedModel {
  /** The engine that runs it on that worker (absent in rows written before engines were reported: the runner). */
  engine?: EngineName;
  family: ModelFamily | null;
  refiner: boolean;
}

/** A LoRA in a worker's folder, as front-ends need to know it. */
export interface AdvertisedLora {
  name: string;
  family: ModelFamily | null;
}

/** A worker as it registers itself. */
export interface WorkerRegistration {
  id: string;
  host: string;
  models: readonly string[];
  device: string | null;
  modelInfo?: Readonly<Record<string, AdvertisedModel>>;
  loras?: readonly AdvertisedLora[];
}

/** A registered GPU worker: what list_models shows about who serves which model. */
export interface WorkerInfo {
  id: string;
  host: string;
  models: string[];
  modelInfo: Record<string, AdvertisedModel>;
  loras: AdvertisedLora[];
  device: string | null;
  /** Why the job it runs waits, as the worker said (null: nothing in the way). */
  notice: string | null;
  heartbeatAt: string;
  /** Heartbeat within the staleness window asked for. */
  alive: boolean;
  /** The job it runs now, if any. */
  runningJobId: string | null;
}

/** The shared queue's GPU workers (Postgres): each registers, heartbeats, and says what its job waits on. */
export interface WorkerRegistry {
  /** Again after a restart: same id, fresh heartbeat, no notice from its last life. */
  register(worker: WorkerRegistration): Promise<void>;
  /** `device`, once known, replaces what was registered. False when the worker is no longer registered. */
  heartbeat(workerId: string, device?: string | null): Promise<boolean>;
  setNotice(workerId: string, notice: string | null): Promise<void>;
  /** A clean shutdown: the row goes, so nobody waits for its heartbeat to go stale. */
  forget(workerId: string): Promise<void>;
  /** Every registered worker, whether it heartbeat within `staleMs`, and what it runs now. */
  workers(staleMs: number): Promise<WorkerInfo[]>;
}

/** What `doctor` reports of the database, whichever it is. */
export interface DatabaseFacts {
  /** Where it is, as a person may see it: a file path, or the server and URL without its password. */
  location: string;
  /** none: no tables yet (the first start creates them); older: the next start of this release upgrades it. */
  schema: "none" | "older" | "current";
  schemaVersion: number;
  schemaKnown: number;
  /** Unknown (null) until the schema is current. */
  counts: Record<JobState, number> | null;
  images: number | null;
  /** SQLite: the process holding the queue's lease, if one does. */
  queueHolderPid: number | null;
  /** The shared queue's workers; null on SQLite, or until the schema is current. */
  workers: WorkerInfo[] | null;
}
