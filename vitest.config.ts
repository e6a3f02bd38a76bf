import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: {
    alias: {
      "@bulwark/core": fileURLToPath(new URL("./packages/core/src/index.ts", import.meta.url)),
      "@bulwark/redis": fileURLToPath(new URL("./packages/redis/src/index.ts", import.meta.url)),
      "@bulwark/sqlite": fileURLToPath(new URL("./packages/sqlite/src/index.ts", import.meta.url))
    }
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000
  }
})
