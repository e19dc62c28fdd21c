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
