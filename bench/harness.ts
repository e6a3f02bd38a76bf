/**
 * The harness of the per-call suites (circuit breaker, rate limiter): every
 * case runs `calls` calls per round, rounds interleaved across cases in a
 * rotating order with a full GC before each, and the figure is the median
 * ns per call.
 */
import { Effect } from "effect"
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
