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
