/**
 * Options are decoded with a Schema before anything is built. Bad values fail
 * `make` (or the layer) with `InvalidOptions`, whose message names every bad
 * field and its rule. Nothing is clamped into a value you did not ask for.
 */
import { Bulkhead } from "@bulwark/core"
import { Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

export const program = Effect.gen(function*() {
  const error = yield* Effect.flip(Bulkhead.make({ name: "db", maxConcurrent: 2.5, maxQueue: -1, queueTimeout: -5 }))
  assert.equal(error._tag, "InvalidOptions")
  assert.equal(error.primitive, "Bulkhead")
  assert.equal(error.name, "db")
  assert.equal(
    error.message,
    [
      "maxConcurrent: Expected an integer >= 1, got 2.5",
      "maxQueue: Expected an integer >= 0, got -1",
      "queueTimeout: Expected a duration >= 0, got -5"
    ].join("\n")
  )

  const unnamed = yield* Effect.flip(Bulkhead.make({ name: " ", maxConcurrent: 1 }))
  assert.equal(unnamed.message, "name: Expected a non-empty name")

  // Options read from a configuration file are checked the same way, unknown fields included.
  const fromConfig: Bulkhead.Options = JSON.parse(`{ "name": "db", "maxConcurrent": 4, "maxWait": "1 second" }`)
  const misspelt = yield* Effect.flip(Bulkhead.make(fromConfig))
  assert.equal(misspelt.message, "maxWait: Expected no excess property")
  return error.message
}).pipe(Effect.scoped)

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
