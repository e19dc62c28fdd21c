import type { StandardSchemaWithJSON } from "@modelcontextprotocol/server";

type JsonNode = { [key: string]: unknown };

/**
 * A schema whose JSON form carries only what a model or client needs. Small local models pay for the whole
 * tools/list answer in tokens on every turn, and zod's JSON Schema repeats `$schema` in each schema and ±2^53
 * bounds on each integer. A result's schema keeps its shape (names, types, enums) but not `required`,
 * `additionalProperties: false` or `propertyNames`: they constrain what the server sends, which is its own
 * business, and tell a model nothing it acts on. Validation is zod's own, untouched.
 */
export function leanSchema<I, O>(schema: StandardSchemaWithJSON<I, O>, { role }: { role: "arguments" | "result" }): StandardSchemaWithJSON<I, O> {
  const standard = schema["~standard"];
  const trimmed = (json: Record<string, unknown>) => trim(json, role) as Record<string, unknown>;
  return {
    "~standard": {
      version: standard.version,
      vendor: standard.vendor,
      validate: (value: unknown) => standard.validate(value),
      jsonSchema: {
        input: (options) => trimmed(standard.jsonSchema.input(options)),
        output: (options) => trimmed(standard.jsonSchema.output(options)),
      },
    },
  };
}

function trim(node: unknown, role: "arguments" | "result"): unknown {
  if (Array.isArray(node)) return node.map((item) => trim(item, role));
  if (typeof node !== "object" || node === null) return node;
  const kept: JsonNode = {};
  for (const [key, value] of Object.entries(node as JsonNode)) {
    if (key === "$schema") continue;
    if ((key === "minimum" || key === "maximum") && Math.abs(value as number) === Number.MAX_SAFE_INTEGER) continue;
    // Arguments keep all of it: a model must know what is required and that unknown names are refused.
    if (role === "result" && (key === "required" || key === "propertyNames" || (key === "additionalProperties" && value === false))) continue;
    kept[key] = trim(value, role);
  }
  return kept;
}
