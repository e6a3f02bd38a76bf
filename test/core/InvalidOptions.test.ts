/**
 * InvalidOptions' helpers for packages that add stores or primitives
 * (`@bulwark/redis` and `@bulwark/sqlite` use them): options decoded as the
 * primitives decode theirs.
 */
import { assert, describe, it } from "@effect/vitest"
import { InvalidOptions } from "@bulwark/core"
import { Duration, Effect, Schema } from "effect"

describe("InvalidOptions rule: the helpers for packages that add stores decode options as the primitives do", () => {
  it.effect("decoder: absent options are {}; every bad field named; unknown fields refused; wholeMillis: whole milliseconds in range", () =>
    Effect.gen(function*() {
      const Options = Schema.Struct({
        name: Schema.optional(Schema.String),
        timeout: Schema.optional(InvalidOptions.wholeMillis({ minimum: 1, maximum: 60_000, example: `"500 millis"` }))
      })
      const decode = InvalidOptions.decoder("MyStore", Options)
      assert.deepStrictEqual(yield* decode(undefined), {})
      assert.strictEqual(Duration.toMillis((yield* decode({ timeout: "2 seconds" })).timeout!), 2000)
      const bad = yield* Effect.flip(decode({ name: "orders", timeout: 0.5, extra: true }))
      assert.instanceOf(bad, InvalidOptions)
      assert.deepStrictEqual([bad.primitive, bad.name], ["MyStore", "orders"])
      assert.include(bad.message, `timeout: Expected a duration of a whole number of milliseconds >= 1 such as "500 millis", got 0.5`)
      assert.include(bad.message, "extra")
      const tooLong = yield* Effect.flip(decode({ timeout: "2 minutes" }))
      assert.include(tooLong.message, "timeout: Expected a duration of a whole number of milliseconds >= 1")
    }))
})
