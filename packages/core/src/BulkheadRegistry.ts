/**
 * A registry of named bulkheads for one application: names are unique, all
 * bulkheads can be listed and observed together, and shutting the registry
 * down closes every bulkhead first and then drains them all, so that queued
 * work everywhere is rejected at once instead of one bulkhead at a time.
 *
 * **Example** (Registering bulkheads)
 *
 * ```ts
 * import { BulkheadRegistry, Bulkhead } from "@bulwark/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const registry = yield* BulkheadRegistry.BulkheadRegistry
 *   const db = yield* registry.register({ name: "db", maxConcurrent: 10 })
 *   const api = yield* registry.register({ name: "api", maxConcurrent: 4, maxQueue: 20 })
 *   yield* Effect.void.pipe(Bulkhead.guard(db))
 *   const all = yield* registry.snapshots // ordered by name: api, db
 *   return all.map((s) => `${s.name}: ${s.admitted} admitted`)
 * }).pipe(Effect.provide(BulkheadRegistry.layer))
 * ```
 *
 * @since 0.1.0
 */
import { Effect, Exit, Layer, Option, Scope } from "effect"
import * as Context from "effect/Context"
import * as Bulkhead from "./Bulkhead.ts"
import { InvalidOptions } from "./InvalidOptions.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface Registry {
  /** Creates a bulkhead owned by the registry; fails with `InvalidOptions` if the name is taken. */
  readonly register: (options: Bulkhead.Options) => Effect.Effect<Bulkhead.Bulkhead, InvalidOptions>
  readonly get: (name: string) => Effect.Effect<Option.Option<Bulkhead.Bulkhead>>
  /** Names in alphabetical order. */
  readonly names: Effect.Effect<ReadonlyArray<string>>
  /** One snapshot per bulkhead, ordered by name. */
  readonly snapshots: Effect.Effect<ReadonlyArray<Bulkhead.Snapshot>>
  /** Closes every bulkhead, then waits for all of them to drain. Later `register` calls fail. */
  readonly shutdown: Effect.Effect<void>
}

/**
 * The registry service key.
 *
 * @since 0.1.0
 * @category services
 */
export class BulkheadRegistry extends Context.Service<BulkheadRegistry, Registry>()("@bulwark/core/BulkheadRegistry") {}

/**
 * Creates a registry whose bulkheads live until the current scope closes;
 * closing the scope runs `shutdown`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Registry, never, Scope.Scope> = Effect.gen(function*() {
  const owner = yield* Scope.make()
  const bulkheads = new Map<string, Bulkhead.Bulkhead>()
  let shutDown = false
  const sorted = () => Array.from(bulkheads.values()).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))

  const shutdown = Effect.suspend(() => {
    shutDown = true
    const all = sorted()
    return Effect.forEach(all, Bulkhead.close, { discard: true }).pipe(
      Effect.andThen(Effect.forEach(all, Bulkhead.drain, { concurrency: "unbounded", discard: true })),
      Effect.andThen(Scope.close(owner, Exit.void))
    )
  })
  yield* Effect.addFinalizer(() => shutdown)

  const register = (options: Bulkhead.Options): Effect.Effect<Bulkhead.Bulkhead, InvalidOptions> =>
    Effect.suspend(() => {
      const name = typeof options?.name === "string" ? options.name : "<unnamed>"
      if (shutDown) {
        return Effect.fail(new InvalidOptions({ primitive: "BulkheadRegistry", name, message: "registry: already shut down" }))
      }
      if (bulkheads.has(name)) {
        return Effect.fail(
          new InvalidOptions({
            primitive: "BulkheadRegistry",
            name,
            message: `name: must be unique in the registry, "${name}" is already registered`
          })
        )
      }
      return Scope.provide(Bulkhead.make(options), owner).pipe(
        Effect.tap((bulkhead) => Effect.sync(() => bulkheads.set(bulkhead.name, bulkhead)))
      )
    })

  return {
    register,
    get: (name) => Effect.sync(() => Option.fromUndefinedOr(bulkheads.get(name))),
    names: Effect.sync(() => sorted().map((b) => b.name)),
    snapshots: Effect.suspend(() => Effect.forEach(sorted(), Bulkhead.stats)),
    shutdown
  } satisfies Registry
})

/**
 * The registry as a Layer: one per application, shut down with it.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<BulkheadRegistry> = Layer.effect(BulkheadRegistry, make)
