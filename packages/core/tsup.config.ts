import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts", "src/Bulkhead.ts", "src/KeyedBulkhead.ts", "src/BulkheadRegistry.ts", "src/InvalidOptions.ts"],
  format: ["esm"],
  dts: true,
  sourcemap: true,
  clean: true,
  splitting: true,
  treeshake: true,
  target: "es2023",
  external: ["effect"]
})
