/**
 * Loaded with `node --import` before a worker: resolves `@bulwark/core` and
 * `@bulwark/sqlite` to their sources, as the test runner's aliases do, so
 * that workers run the code under test without a build and without the
 * packages being linked into node_modules.
 */
import { registerHooks } from "node:module"

const sources: Record<string, string> = {
  "@bulwark/core": new URL("../../../packages/core/src/index.ts", import.meta.url).href,
  "@bulwark/sqlite": new URL("../../../packages/sqlite/src/index.ts", import.meta.url).href
}

registerHooks({
  resolve(specifier, context, nextResolve) {
    const url = sources[specifier]
    return url === undefined ? nextResolve(specifier, context) : { url, shortCircuit: true }
  }
})
