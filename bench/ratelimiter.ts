/**
 * The rate limiter suite: the cost of one decision in Bulwark's `RateLimiter`
 * side by side with Effect's own `persistence/RateLimiter` (with its in-memory
 * store), in one process, in one run.
 *
 * `run()` measures, prints one table per scenario with each row's ratio to
 * the base Bulwark row, and returns the figures in the shape of the other
 * suites (`ScenarioResult`). Standalone: `npm run build && node --expose-gc
 * bench/ratelimiter.ts`.
 *
 * Scenarios:
 * 1. Admitted decisions: a loop of 100,000 calls in one fiber, every one
 *    admitted (limits far above what the loop takes).
 * 2. Rejected decisions: the limit is spent, every call is refused and the
 *    refusal handled.
 */
import { RateLimiter, RateLimiterStore } from "@bulwark/core"
import { Effect, Exit, Scope } from "effect"
import { RateLimiter as EffectRateLimiter } from "effect/persistence"
import { fileURLToPath } from "node:url"
import type { Goal, ScenarioResult, Table } from "./bulkhead.ts"
import { type Case, fmt, measure } from "./harness.ts"

/** Limiters of one scenario live in its scope, closed when the scenario ends. */
const limiters = () => {
  const scope = Scope.makeUnsafe()
  return {
    make: (options: RateLimiter.Options): RateLimiter.RateLimiter =>
      Effect.runSync(RateLimiter.make(options).pipe(Scope.provide(scope))),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

const effectLimiter = (): EffectRateLimiter.RateLimiter =>
  Effect.runSync(EffectRateLimiter.make.pipe(Effect.provide(EffectRateLimiter.layerStoreMemory)))


// -----------------------------------------------------------------------------
// 1. admitted decisions
// -----------------------------------------------------------------------------

const CALLS = 100_000
/** Far above what any round takes: every decision admits. */
const HUGE = 1e12

export const admitted = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const N = CALLS
  const { make: bulwark, close } = limiters()
  const bucket = RateLimiter.tokenBucket({ capacity: HUGE, refill: HUGE, per: "1 second" })
  const tokenBucket = bulwark({ name: "bench-token-bucket", algorithm: bucket })
  const gcra = bulwark({ name: "bench-gcra", algorithm: RateLimiter.gcra({ rate: HUGE, per: "1 second", burst: HUGE }) })
  const fixed = bulwark({ name: "bench-fixed", algorithm: RateLimiter.fixedWindow({ limit: HUGE, window: "1 hour" }) })
  const sliding = bulwark({ name: "bench-sliding", algorithm: RateLimiter.slidingWindow({ limit: HUGE, window: "1 minute" }) })
  const waiting = bulwark({ name: "bench-wait", algorithm: bucket, onExceeded: "wait", maxWait: "1 second" })
  // The same in-memory store seen only through its `Effect` operations, as a remote store would be.
  const memory = RateLimiterStore.memory()
  const sharedStore = RateLimiterStore.make({ consume: memory.consume, refund: memory.refund, block: memory.block })
  const shared = bulwark({ name: "bench-shared", algorithm: bucket, store: sharedStore })
  const effect = effectLimiter()
  const withLimiter = Effect.runSync(EffectRateLimiter.makeWithRateLimiter.pipe(Effect.provideService(EffectRateLimiter.RateLimiter, effect)))

  const guarded = RateLimiter.guard(tokenBucket)
  const fixedOptions = { key: "bench-fixed", limit: HUGE, window: "1 hour" } as const
  const bucketOptions = { key: "bench-bucket", limit: HUGE, window: "1 hour", algorithm: "token-bucket" } as const
  const limitFixed = withLimiter(fixedOptions)

  // Each case has its own loop, so that one case's effects do not make another's call sites megamorphic.
  const cases: Array<Case> = [
    {
      peer: "Bulwark",
      variant: "token bucket, guard built once: `guarded(Effect.void)`",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* guarded(Effect.void)
      })
    },
    {
      peer: "Bulwark",
      variant: "token bucket, guard applied each call: `Effect.void.pipe(RateLimiter.guard(l))`",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void.pipe(RateLimiter.guard(tokenBucket))
      })
    },
    {
      peer: "Bulwark",
      variant: "GCRA",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void.pipe(RateLimiter.guard(gcra))
      })
    },
    {
      peer: "Bulwark",
      variant: "fixed window",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void.pipe(RateLimiter.guard(fixed))
      })
    },
    {
      peer: "Bulwark",
      variant: "sliding window (exact log)",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void.pipe(RateLimiter.guard(sliding))
      })
    },
    {
      peer: "Bulwark",
      variant: "token bucket, `onExceeded: \"wait\"` (admitted at once)",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void.pipe(RateLimiter.guard(waiting))
      })
    },
    {
      peer: "Bulwark",
      variant: "`RateLimiter.consume(l)` (returns a Permit)",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* RateLimiter.consume(tokenBucket)
      })
    },
    {
      peer: "Bulwark",
      variant: "token bucket through the store's `Effect` interface (no in-process fast path)",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void.pipe(RateLimiter.guard(shared))
      })
    },
    {
      peer: "Effect RateLimiter",
      variant: "`consume` fixed-window, then the effect",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.andThen(effect.consume(fixedOptions), Effect.void)
      })
    },
    {
      peer: "Effect RateLimiter",
      variant: "`consume` token-bucket, then the effect",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.andThen(effect.consume(bucketOptions), Effect.void)
      })
    },
    {
      peer: "Effect RateLimiter",
      variant: "`makeWithRateLimiter` fixed-window, built once",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* limitFixed(Effect.void)
      })
    },
    {
      peer: "(reference)",
      variant: "bare Effect loop: `yield* Effect.void`",
      reference: true,
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void
      })
    }
  ]
  const rows = await measure(cases, { warmup: 2, rounds: 7 })
  await close()
  const bare = rows[rows.length - 1].value
  const withNet = rows.map((row) => ({ ...row, extra: row.reference === true ? undefined : row.value - bare }))
  const base = withNet[0]
  const effectFixed = withNet[8]
  const slowestBulwark = Math.max(...withNet.slice(0, 6).map((r) => r.value))
  const goals: Array<Goal> = [
    {
      text: "Limiter decision <= 400 ns per call in an in-fiber loop (every Bulwark algorithm, both modes)",
      met: slowestBulwark <= 400,
      detail: `slowest ${fmt(slowestBulwark)} ns/call, token bucket ${fmt(base.value)} ns/call`
    },
    {
      text: "Much cheaper per decision than Effect's `persistence/RateLimiter`",
      met: effectFixed.value >= 3 * base.value,
      detail: `Effect fixed-window = ${fmt(effectFixed.value / base.value, 2)}x Bulwark`
    }
  ]
  const table: Table = {
    id: "ratelimiter-admitted",
    title: `Loop of ${N.toLocaleString("en-US")} admitted decisions in one fiber`,
    unit: "ns/call",
    base: 0,
    rows: withNet,
    extraHeader: "net of bare loop (ns)",
    notes: [
      "Limits are far above what a round takes, so every decision admits. Effect's limiter runs on its `layerStoreMemory`.",
      "The \"store's `Effect` interface\" row runs the same in-memory store without its synchronous fast path: one `Effect` per decision, as a remote store needs."
    ]
  }
  return { id: "ratelimiter-admitted", title: "Rate limiter: admitted decisions", tables: [table], goals, seconds: (performance.now() - started) / 1000 }
}

// -----------------------------------------------------------------------------
// 2. rejected decisions
// -----------------------------------------------------------------------------

/** Effect's rejection builds two Schema errors with stack traces: fewer calls keep the round short. */
const EFFECT_REJECTIONS = 10_000

export const rejected = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const N = CALLS
  const { make: bulwark, close } = limiters()
  const spent = bulwark({ name: "bench-rejected", algorithm: RateLimiter.fixedWindow({ limit: 1, window: "1 hour" }) })
  const guarded = RateLimiter.guard(spent)
  Effect.runSync(guarded(Effect.void)) // the only unit of the window is taken
  const effect = effectLimiter()
  const options = { key: "bench-rejected", limit: 1, window: "1 hour" } as const
  Effect.runSync(effect.consume(options))
  // A real rejection, kept for the no-limiter reference rows: the cost of handling a failure at all.
  const prebuilt = Effect.runSync(Effect.flip(guarded(Effect.void)))
  let handled = 0
  const cases: Array<Case> = [
    {
      peer: "Bulwark",
      variant: "`Effect.exit(guarded(Effect.void))`",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) if (Exit.isFailure(yield* Effect.exit(guarded(Effect.void)))) handled++
      })
    },
    {
      peer: "Bulwark",
      variant: "`guarded(Effect.void).pipe(Effect.catchTag(\"RateLimited\", ...))`",
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) {
          yield* guarded(Effect.void).pipe(Effect.catchTag("RateLimited", () => Effect.sync(() => void handled++)))
        }
      })
    },
    {
      peer: "Effect RateLimiter",
      variant: "`Effect.exit(consume(...))`",
      calls: EFFECT_REJECTIONS,
      effect: Effect.gen(function*() {
        for (let i = 0; i < EFFECT_REJECTIONS; i++) if (Exit.isFailure(yield* Effect.exit(effect.consume(options)))) handled++
      })
    },
    {
      peer: "Effect RateLimiter",
      variant: "`consume(...).pipe(Effect.catchTag(\"RateLimiterError\", ...))`",
      calls: EFFECT_REJECTIONS,
      effect: Effect.gen(function*() {
        for (let i = 0; i < EFFECT_REJECTIONS; i++) {
          yield* effect.consume(options).pipe(Effect.catchTag("RateLimiterError", () => Effect.sync(() => void handled++)))
        }
      })
    },
    {
      peer: "(reference)",
      variant: "no limiter: `Effect.exit(Effect.fail(error))`",
      reference: true,
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) if (Exit.isFailure(yield* Effect.exit(Effect.fail(prebuilt)))) handled++
      })
    },
    {
      peer: "(reference)",
      variant: "no limiter: `Effect.fail(error).pipe(Effect.catchTag(\"RateLimited\", ...))`",
      reference: true,
      calls: N,
      effect: Effect.gen(function*() {
        for (let i = 0; i < N; i++) {
          yield* Effect.fail(prebuilt).pipe(Effect.catchTag("RateLimited", () => Effect.sync(() => void handled++)))
        }
      })
    }
  ]
  const measured = await measure(cases, { warmup: 1, rounds: 5 })
  await close()
  const expected = (N * 4 + EFFECT_REJECTIONS * 2) * 6
  if (handled !== expected) throw new Error(`bench: ${handled} rejections handled, expected ${expected}`)
  const [exitFloor, catchFloor] = [measured[4].value, measured[5].value]
  const rows = measured.map((row, i) => ({
    ...row,
    extra: row.reference === true ? undefined : row.value - (i % 2 === 0 ? exitFloor : catchFloor)
  }))
  const base = rows[0]
  const goals: Array<Goal> = [
    {
      text: "A rejection observed with `Effect.exit` costs at most 1 microsecond",
      met: rows[0].value <= 1000,
      detail: `${fmt(rows[0].value)} ns (${fmt(rows[0].extra ?? 0)} ns above handling a ready-made failure); with catchTag ${
        fmt(rows[1].value)
      } ns, of which Effect's catchTag alone is ${fmt(catchFloor)} ns`
    },
    {
      text: "Much cheaper per rejection than Effect's `persistence/RateLimiter`",
      met: rows[2].value >= 3 * base.value,
      detail: `Effect = ${fmt(rows[2].value / base.value, 1)}x Bulwark`
    }
  ]
  const table: Table = {
    id: "ratelimiter-rejected",
    title: "Decisions that reject: the limit is spent and every call is refused and handled",
    unit: "ns/call",
    base: 0,
    rows,
    extraHeader: "net of the same handling without a limiter (ns)",
    notes: [
      `Bulwark rows loop ${N.toLocaleString("en-US")} calls; Effect rows ${EFFECT_REJECTIONS.toLocaleString("en-US")} (each rejection builds two Schema errors with stack traces).`,
      "Bulwark builds `RateLimited` without its Schema constructor (same prototype and fields, no stack)."
    ]
  }
  return { id: "ratelimiter-rejected", title: "Rate limiter: rejected decisions", tables: [table], goals, seconds: (performance.now() - started) / 1000 }
}

// -----------------------------------------------------------------------------
// printing
// -----------------------------------------------------------------------------

const number = (x: number): string => {
  const abs = Math.abs(x)
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

const render = (table: Table): string => {
  const base = table.rows[table.base]
  const header = ["Peer", "What", `${table.unit} (median)`, "min - max", "vs Bulwark", ...(table.extraHeader === undefined ? [] : [table.extraHeader])]
  const rows = table.rows.map((row) => [
    row === base ? `**${row.peer}**` : row.peer,
    row.variant,
    number(row.value),
    `${number(row.min)} - ${number(row.max)}`,
    row.reference === true ? "-" : row === base ? "1.00x (base)" : `${(row.value / base.value).toFixed(2)}x`,
    ...(table.extraHeader === undefined ? [] : [row.extra === undefined ? "" : number(row.extra)])
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`
  return [
    `**${table.title}**`,
    "",
    line(header),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...rows.map(line),
    "",
    `"vs Bulwark" is the row's figure divided by the **base** row: above 1.00x it is slower.`,
    ...(table.notes ?? []).map((n) => `\n${n}`)
  ].join("\n")
}

/**
 * Runs both scenarios, prints their tables and goals, and returns them.
 */
export const run = async (): Promise<ReadonlyArray<ScenarioResult>> => {
  const results: Array<ScenarioResult> = []
  for (const scenario of [admitted, rejected]) {
    const result = await scenario()
    results.push(result)
    console.log(`### ${result.title}\n`)
    for (const table of result.tables) console.log(render(table) + "\n")
    for (const goal of result.goals) console.log(`- ${goal.met ? "**met**" : "**MISSED**"}: ${goal.text}. ${goal.detail}.`)
    console.log(`\n(scenario took ${result.seconds.toFixed(1)} s)\n`)
  }
  return results
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await run()
