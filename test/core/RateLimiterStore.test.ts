/**
 * The RateLimiterStore contract (test/support/rateLimiterStoreContract.ts) on
 * the in-memory store, through its `Effect` operations. The Redis store runs
 * the same suite in test/redis/RedisRateLimiterStore.test.ts.
 */
import { describe, it } from "@effect/vitest"
import { RateLimiterStore } from "@bulwark/core"
import { Effect } from "effect"
import { storeContract } from "../support/rateLimiterStoreContract.ts"

describe("RateLimiterStore contract on memory()", () => {
  storeContract({
    test: (name, body) => it.effect(name, body),
    makeStore: Effect.sync(() => RateLimiterStore.memory())
  })
})
