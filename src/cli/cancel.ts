import { connect } from "./connect.js";
import { printJson } from "./output.js";
import { parseCommand } from "./usage.js";

/** `kitty-images cancel JOB_ID`: cancel_job; a queued job is dropped, a running one stops at its next step. */
export async function cancelCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseCommand("cancel", args, { demo: { type: "boolean" } }, { min: 1, max: 1, name: "a job id (the jobId generate printed)" });
  const connection = await connect({ runWorker: false, demo: values.demo ?? false });
  try {
    printJson(await connection.call("cancel_job", { jobId: positionals[0] }));
  } finally {
    await connection.close();
  }
}
