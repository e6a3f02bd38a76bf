import { defineConfig } from "tsup"

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/SqliteBulkheadStore.ts",
    "src/SqliteCircuitBreakerStore.ts",
    "src/SqliteIdempotencyStore.ts",
    "src/SqliteRateLimiterStore.ts",
    "src/SqliteDatabase.ts"
  ],
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
  // node:sqlite is built into Node (>= 22.19 without a flag): nothing to bundle.
  external: ["effect", "@bulwark/core", /^node:/],
  // tsup strips `node:` by default, but `sqlite` without it is an npm package, not Node's module.
  removeNodeProtocol: false
})
