import { describe, expect, it } from "vitest";
import { postgresUnavailable } from "../../src/queue/pgErrors.js";

describe("postgresUnavailable", () => {
  const refused = (port: number) => Object.assign(new Error(`connect ECONNREFUSED 127.0.0.1:${port}`), { code: "ECONNREFUSED", port });

  it("names an outage of the queue's Postgres as database_unavailable, saying to retry", () => {
    for (const error of [
      Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" }),
      Object.assign(new Error("the database system is starting up"), { code: "57P03" }),
      Object.assign(new Error("connection failure"), { code: "08006" }),
      new Error("Connection terminated unexpectedly"),
      new Error("timeout exceeded when trying to connect"),
      refused(5433),
    ]) {
      const refusal = postgresUnavailable(error, "job_status failed", 5433);
      expect(refusal?.code, error.message).toBe("database_unavailable");
      expect(refusal?.message).toMatch(/^job_status failed: the job database \(Postgres\) is not answering \(.+\); nothing was changed\. Try again in a few seconds$/);
    }
  });

  it("leaves everything else alone: S3 refusing a connection, a constraint, a bug", () => {
    expect(postgresUnavailable(refused(9000), "select_image failed", 5433)).toBeNull();
    expect(postgresUnavailable(Object.assign(new Error("duplicate key"), { code: "23505" }), "x", 5433)).toBeNull();
    expect(postgresUnavailable(new TypeError("cannot read properties of undefined"), "x", 5433)).toBeNull();
    expect(postgresUnavailable(undefined, "x", 5433)).toBeNull();
  });
});
