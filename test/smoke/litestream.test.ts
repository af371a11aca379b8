import assert from "node:assert/strict";
import { test } from "node:test";
import { LITESTREAM_VERSION, runLitestream } from "../helpers/litestream.ts";

test("litestream: `litestream version` prints v0.3.13", async () => {
  const r = await runLitestream(["version"]);
  assert.equal(r.stdout.trim(), LITESTREAM_VERSION);
  assert.equal(LITESTREAM_VERSION, "v0.3.13");
});
