/**
 * A rate limiter as a Layer service. Everything that uses the key shares one
 * instance, so the limit is joint: two features calling the same API cannot
 * together exceed it.
 */
import { RateLimiter } from "@bulwark/core"
import { Context, Effect } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Maps extends Context.Service<Maps, RateLimiter.RateLimiter>()("app/Maps") {}
const MapsLive = RateLimiter.layer(Maps, {
  name: "maps",
  algorithm: RateLimiter.tokenBucket({ capacity: 4, refill: 4, per: "1 hour" })
})

// Two features, written apart from each other, both call the maps API.
const geocode = (address: string) => Effect.succeed(`geocoded ${address}`).pipe(RateLimiter.guard(Maps))
const route = (from: string, to: string) => Effect.succeed(`route ${from} -> ${to}`).pipe(RateLimiter.guard(Maps, { cost: 2 }))

export const program = Effect.gen(function*() {
  assert.equal(yield* geocode("1 Main St"), "geocoded 1 Main St")
  assert.equal(yield* route("A", "B"), "route A -> B")
  assert.equal(yield* geocode("2 Main St"), "geocoded 2 Main St")
  // Four units used between them: the shared bucket is empty for both.
  assert.equal((yield* Effect.flip(geocode("3 Main St"))).reason, "Exceeded")
  assert.equal((yield* Effect.flip(route("B", "C"))).reason, "Exceeded")
  return (yield* RateLimiter.stats(Maps)).admittedCost
}).pipe(Effect.provide(MapsLive)) // provided once: one limiter

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await Effect.runPromise(program))
