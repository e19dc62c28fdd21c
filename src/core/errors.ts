/** Errors as values: a stable `code` an agent can branch on and a message a person can act on. */
export type ErrorCode =
  | "invalid_argument"
  | "unknown_model"
  | "unknown_lora"
  | "model_missing"
  | "model_unsupported"
  | "not_found"
  | "invalid_state"
  | "config_invalid"
  | "engine_unavailable"
  | "storage_unavailable"
  | "database_busy"
  | "database_unavailable";

/** The runner's own codes: its wire protocol (engines/runnerProtocol.ts) sends these and no others. */
export const RUNNER_ERROR_CODES = [
  "bad_request",
  "model_not_found",
  "model_load_failed",
  "out_of_memory",
  "disk_full",
  "generation_failed",
  "cancelled",
] as const;

/**
 * Every code a failed job's `error.code` can hold: what an agent may branch on, listed once (job_status's output
 * schema names them). A database written by an older release may hold a code this list lost; it reads as written.
 */
export const JOB_ERROR_CODES = [
  ...RUNNER_ERROR_CODES,
  // An engine's: not reachable, broke mid-job, or made something that is not the image asked for.
  "engine_unavailable",
  "engine_unreachable",
  "engine_failed",
  "runner_crashed",
  "runner_broken",
  "runner_hung",
  "bad_output",
  "init_image_unavailable",
  // A host that took a job it cannot run (scale-out: its folder for the model, its refiner or a LoRA is missing).
  "model_missing",
  // The queue's: a run cut off twice, storage refusing for good, a bug.
  "interrupted",
  "storage_refused",
  "internal_error",
] as const;
export type JobErrorCode = (typeof JOB_ERROR_CODES)[number];

export class KittyError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The argument at fault, when there is one (REST's 422 names it). */
    readonly field?: string,
  ) {
    super(message);
    this.name = "KittyError";
  }
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
