import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts", "src/Bulkhead.ts", "src/KeyedBulkhead.ts", "src/BulkheadRegistry.ts", "src/InvalidOptions.ts", "src/CircuitBreaker.ts", "src/Timeout.ts", "src/Timeouts.ts", "src/Retry.ts", "src/RateLimiter.ts", "src/KeyedRateLimiter.ts", "src/RateLimiterStore.ts", "src/CircuitBreakerStore.ts", "src/Chaos.ts", "src/Hedge.ts", "src/Fallback.ts", "src/Policy.ts", "src/Store.ts", "src/Idempotency.ts", "src/IdempotencyStore.ts", "src/DistributedBulkhead.ts", "src/BulkheadStore.ts"],
  format: ["esm"],
  // Internal machinery stays out of the published types.
  dts: { compilerOptions: { stripInternal: true } },
  silent: true,
  sourcemap: true,
  clean: true,
  splitting: true,
  treeshake: true,
  target: "es2023",
  external: ["effect"]
})
