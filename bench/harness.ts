/**
 * The harness of the per-call suites (circuit breaker, rate limiter): every
 * case runs `calls` calls per round, rounds interleaved across cases in a
 * rotating order with a full GC before each, and the figure is the median
 * ns per call.
 */
import { type Context, Effect } from "effect"
import type { Goal, Row } from "./bulkhead.ts"

export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

export const gc = (): void => {
  const collect = (globalThis as { gc?: () => void }).gc
  if (collect !== undefined) {
    collect()
    collect()
  }
}

export interface Case {
  readonly peer: string
  readonly variant: string
  readonly reference?: boolean
  /** Calls per round. */
  readonly calls: number
  /** One round: an effect run with `Effect.runPromise`, or an async loop for promise libraries. */
  readonly effect: Effect.Effect<unknown, unknown> | (() => Promise<void>)
}

export const measure = async (
  cases: ReadonlyArray<Case>,
  options: { readonly warmup: number; readonly rounds: number }
): Promise<Array<Row>> => {
  const samples = cases.map(() => [] as Array<number>)
  for (let r = 0; r < options.warmup + options.rounds; r++) {
    for (let k = 0; k < cases.length; k++) {
      const i = (k + r) % cases.length
      const round = cases[i].effect
      gc()
      const start = performance.now()
      await (typeof round === "function" ? round() : Effect.runPromise(round))
      const ns = ((performance.now() - start) * 1e6) / cases[i].calls
      if (r >= options.warmup) samples[i].push(ns)
    }
  }
  return cases.map((c, i) => ({
    peer: c.peer,
    variant: c.variant,
    value: median(samples[i]),
    min: Math.min(...samples[i]),
    max: Math.max(...samples[i]),
    rounds: samples[i].length,
    ...(c.reference === true ? { reference: true } : {})
  }))
}

export const fmt = (x: number, digits = 0): string => x.toFixed(digits)

/** A "no slower than" or "at most" goal: met, missed by less than 5% (noise), or missed. */
export const goal = (text: string, value: number, limit: number, detail: string): Goal => ({
  text,
  met: value <= limit,
  withinNoise: value > limit && value <= limit * 1.05,
  detail
})

/** The element at quantile `p` (0 to 1) of sorted samples. */
export const percentile = (sorted: ArrayLike<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]

/** One subject of a latency run: an effect timed call by call. */
export interface Subject {
  readonly peer: string
  readonly variant: string
  readonly reference?: boolean
  readonly run: Effect.Effect<unknown, unknown>
}

/**
 * Latency: one fiber, one decision at a time, each timed; `rounds` rounds
 * of `calls` calls rotate across subjects (a full GC before each), after a
 * first round that warms up the connections, the scripts and the JIT. The
 * figure is the median of all samples in microseconds, and `extra` their
 * p99.
 */
export const latency = async (
  subjects: ReadonlyArray<Subject>,
  options: { readonly rounds: number; readonly calls: number; readonly context?: Context.Context<never> }
): Promise<Array<Row>> => {
  const samples = subjects.map(() => [] as Array<number>)
  for (let round = 0; round < options.rounds + 1; round++) {
    for (let k = 0; k < subjects.length; k++) {
      const i = (k + round) % subjects.length
      const run = subjects[i].run
      const times = samples[i]
      gc()
      const loop = Effect.gen(function*() {
        for (let c = 0; c < options.calls; c++) {
          const start = performance.now()
          yield* run
          if (round > 0) times.push((performance.now() - start) * 1000)
        }
      })
      await Effect.runPromise(options.context === undefined ? loop : loop.pipe(Effect.provideContext(options.context)))
    }
  }
  return subjects.map((s, i) => {
    const sorted = samples[i].sort((a, b) => a - b)
    const p50 = median(sorted)
    return {
      peer: s.peer,
      variant: s.variant,
      value: p50,
      min: p50,
      max: p50,
      rounds: options.rounds,
      extra: percentile(sorted, 0.99),
      ...(s.reference === true ? { reference: true } : {})
    }
  })
}
