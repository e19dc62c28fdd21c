import { describe, expect, it } from "vitest";
import { fromPostgres, postgresUnavailable } from "../../src/db/postgres/errors.js";

describe("postgresUnavailable", () => {
  const network = (code: string) => Object.assign(new Error(`read ${code}`), { code });

  it("names an outage of the queue's Postgres as database_unavailable, saying to retry", () => {
    for (const error of [
      Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" }),
      Object.assign(new Error("the database system is starting up"), { code: "57P03" }),
      Object.assign(new Error("connection failure"), { code: "08006" }),
      Object.assign(new Error("sorry, too many clients already"), { code: "53300" }),
      new Error("Connection terminated unexpectedly"),
      new Error("timeout exceeded when trying to connect"),
      fromPostgres(network("ECONNREFUSED")) as Error,
      fromPostgres(network("ECONNRESET")) as Error,
    ]) {
      const refusal = postgresUnavailable(error, "job_status failed");
      expect(refusal?.code, error.message).toBe("database_unavailable");
      expect(refusal?.message).toMatch(/^job_status failed: the job database \(Postgres\) is not answering \(.+\)\. Try again in a few seconds \(a generate_image whose answer was lost this way may have queued its job\)$/);
    }
  });

  it("leaves everything else alone: a connection reset the pool did not see (S3's), a constraint, a bug", () => {
    expect(postgresUnavailable(network("ECONNRESET"), "select_image failed")).toBeNull();
    expect(postgresUnavailable(fromPostgres(Object.assign(new Error("duplicate key"), { code: "23505" })), "x")).toBeNull();
    expect(postgresUnavailable(new TypeError("cannot read properties of undefined"), "x")).toBeNull();
    expect(postgresUnavailable(undefined, "x")).toBeNull();
  });
});
