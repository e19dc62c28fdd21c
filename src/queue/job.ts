import type { JobErrorCode } from "../core/errors.js";
import type { GenerationRequest } from "../core/generation.js";

/**
 * The job state machine, written down once.
 *
 *   queued ──► running ──► done
 *     │          │ ├─────► failed
 *     │          │ └─────► cancelled
 *     │          └──► queued      (resumed: the process died or the runner crashed mid-job; one retry)
 *     └──────────────────► cancelled
 */
export const JOB_STATES = ["queued", "running", "done", "failed", "cancelled"] as const;
export type JobState = (typeof JOB_STATES)[number];

export const TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  queued: ["running", "cancelled"],
  running: ["done", "failed", "cancelled", "queued"],
  done: [],
  failed: [],
  cancelled: [],
};

/** A job gets this many runs in all; a run cut short by a crash counts as one. */
export const MAX_ATTEMPTS = 2;

export function isTerminal(state: JobState): boolean {
  return TRANSITIONS[state].length === 0;
}

export function canTransition(from: JobState, to: JobState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** How a job ended badly, as job_status reports it: a code from the one list, and words a person can act on. */
export interface JobError {
  code: JobErrorCode;
  message: string;
}

export interface Job {
  id: string;
  /** FIFO order: jobs run by it, and a requeued job keeps its place. */
  seq: number;
  state: JobState;
  request: GenerationRequest;
  /** Runs so far; a run that ended in a crash counts. */
  attempts: number;
  /** Fixed by the first run, so a retry overwrites its own upload instead of storing a second copy. */
  imageKey: string | null;
  progress: { step: number; totalSteps: number } | null;
  cancelRequested: boolean;
  error: JobError | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/** The job changed hands: another run holds it now (this process lost its lease, or its host was declared dead). */
export class JobTakenOver extends Error {
  constructor(jobId: string) {
    super(`job ${jobId} is held by another run now`);
    this.name = "JobTakenOver";
  }
}
