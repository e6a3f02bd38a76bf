import { Metric } from "effect"
import type * as Context from "effect/Context"

/**
 * Pull-based metric series: registered once in a `MetricRegistry`, their
 * value computed from a primitive's own counters when an exporter reads
 * them. Admission and release pay nothing for metrics.
 *
 * @internal
 */
const noop = () => {}

/** @internal */
export const pullCounter = (
  context: Context.Context<never>,
  id: string,
  description: string,
  attributes: Readonly<Record<string, string>>,
  get: () => number
): Metric.Registration =>
  Metric.registerUnsafe(Metric.counter(id, { description, attributes }), context, {
    get: () => ({ count: get(), incremental: true }),
    update: noop,
    modify: noop
  })

/** @internal */
export const pullGauge = (
  context: Context.Context<never>,
  id: string,
  description: string,
  attributes: Readonly<Record<string, string>>,
  get: (context: Context.Context<never>) => number
): Metric.Registration =>
  Metric.registerUnsafe(Metric.gauge(id, { description, attributes }), context, {
    get: (read) => ({ value: get(read) }),
    update: noop,
    modify: noop
  })

/** @internal */
export const pullHistogram = (
  context: Context.Context<never>,
  id: string,
  description: string,
  boundaries: ReadonlyArray<number>,
  attributes: Readonly<Record<string, string>>,
  get: () => Metric.HistogramState
): Metric.Registration =>
  Metric.registerUnsafe(Metric.histogram(id, { description, boundaries, attributes }), context, {
    get,
    update: noop,
    modify: noop
  })
