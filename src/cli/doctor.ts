import { formatChecks, runDoctor } from "../app/doctor.js";
import { loadSetup } from "./setup.js";
import { parseCommand } from "./usage.js";

/** `kitty-images doctor [--demo]`: one ok/FAIL line per part on stdout; exit code 1 when any part fails. */
export async function doctorCommand(args: string[]): Promise<void> {
  const { values } = parseCommand("doctor", args, { demo: { type: "boolean" } }, { min: 0, max: 0, name: "" });
  const { config, log } = await loadSetup("person", { demo: values.demo ?? false });
  const checks = await runDoctor(config, log);
  process.stdout.write(`${formatChecks(checks)}\n`);
  if (checks.some((entry) => !entry.ok)) process.exitCode = 1;
}
