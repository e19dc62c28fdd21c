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
      validate: (...args: Parameters<typeof standard.validate>) => standard.validate(...args),
      jsonSchema: {
        input: (options) => trimmed(standard.jsonSchema.input(options)),
        output: (options) => trimmed(standard.jsonSchema.output(options)),
      },
    },
  };
}

/** `{anyOf: [{type: "object", ...}, {type: "null"}]}` says the same as `{type: ["object", "null"], ...}`, longer. */
function nullableAsType(node: JsonNode): JsonNode {
  const options = node.anyOf;
  if (!Array.isArray(options) || options.length !== 2 || Object.keys(node).length !== 1) return node;
  const [value, none] = options as JsonNode[];
  if (JSON.stringify(none) !== '{"type":"null"}' || typeof value?.type !== "string") return node;
  return { ...value, type: [value.type, "null"] };
}

function trim(node: unknown, role: "arguments" | "result", nested = false): unknown {
  if (Array.isArray(node)) return node.map((item) => trim(item, role, nested));
  if (typeof node !== "object" || node === null) return node;
  const kept: JsonNode = {};
  for (const [key, value] of Object.entries(node as JsonNode)) {
    if (key === "properties") {
      // Names of fields, not keywords: keep every one, trim what each describes.
      kept[key] = Object.fromEntries(Object.entries(value as JsonNode).map(([name, field]) => [name, trim(field, role, true)]));
      continue;
    }
    if (key === "$schema") continue;
    if ((key === "minimum" || key === "maximum") && Math.abs(value as number) === Number.MAX_SAFE_INTEGER) continue;
    // Arguments keep what is required, and at the top that unknown names are refused. Inside an argument (outpaint's
    // sides, a LoRA) the server refuses an unknown name too, naming it; said once at the top, it is not said again.
    // `additionalProperties: {}` allows anything, as leaving it out does.
    const empty = typeof value === "object" && value !== null && !Array.isArray(value) && Object.keys(value).length === 0;
    const anything = key === "additionalProperties" && (value === false || empty);
    if (role === "result" && (key === "required" || key === "propertyNames" || anything)) continue;
    if (role === "arguments" && nested && key === "additionalProperties" && value === false) continue;
    kept[key] = trim(value, role, nested);
  }
  // A choice of constants is an enum, said shorter.
  if (Array.isArray(kept.anyOf) && kept.anyOf.every((option) => typeof option === "object" && option !== null && Object.keys(option).length === 1 && "const" in option)) {
    kept.enum = (kept.anyOf as JsonNode[]).map((option) => option.const);
    delete kept.anyOf;
  }
  // An enum or a const names its values, which say their type: `type` beside them repeats it.
  if ((Array.isArray(kept.enum) || "const" in kept) && typeof kept.type === "string") delete kept.type;
  return nullableAsType(kept);
}
