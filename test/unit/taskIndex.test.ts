import { afterEach, beforeEach, describe } from "vitest";
import { openDatabase, type Db } from "../../src/db/sqlite/database.js";
import { SqliteTaskIndex } from "../../src/db/sqlite/tasks.js";
import { taskIndexContract } from "../contracts/taskIndexContract.js";

describe("SqliteTaskIndex", () => {
  let db: Db;
  let tasks: SqliteTaskIndex;
  beforeEach(() => {
    db = openDatabase(":memory:");
    tasks = new SqliteTaskIndex(db);
  });
  afterEach(() => db.close());

  taskIndexContract("SQLite", () => tasks);
});
