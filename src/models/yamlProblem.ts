import type { YAMLError } from "yaml";

/**
 * A YAML error in words that point at the line to fix. The parser places a line indented under a key that already
 * has its value (`sd15: /x` then `  path: ...`) at the key's line; the line to fix is the indented one.
 */
export function yamlProblem(errors: YAMLError[], text: string): string {
  const nested = errors.find((error) => error.code === "BLOCK_AS_IMPLICIT_KEY" || error.code === "MULTILINE_IMPLICIT_KEY");
  const keyLine = nested?.linePos?.[0].line;
  const lines = text.split("\n");
  const indent = (line: string | undefined) => (line ?? "").length - (line ?? "").trimStart().length;
  if (nested && keyLine && indent(lines[keyLine]) > indent(lines[keyLine - 1]) && errors[0] === nested) {
    const line = keyLine + 1;
    return `line ${line} ("${lines[line - 1]!.trim()}") is indented under line ${keyLine} ("${lines[keyLine - 1]!.trim()}"), which already has its value: indent it as line ${keyLine} is, or move the value of line ${keyLine} under it`;
  }
  return errors[0]!.message;
}

