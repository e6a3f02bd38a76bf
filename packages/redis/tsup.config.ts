import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts", "src/RedisIdempotencyStore.ts", "src/RedisBulkheadStore.ts", "src/RedisRateLimiterStore.ts", "src/RedisCircuitBreakerStore.ts"],
  format: ["esm"],
  // Internal machinery stays out of the published types.
  dts: { compilerOptions: { stripInternal: true } },
  silent: true,
  sourcemap: true,
  clean: true,
  splitting: true,
  treeshake: true,
  target: "es2023",
  // Peers: the application's copies, so that services and type ids are the same objects.
  external: ["effect", "@bulwark/core"]
})
