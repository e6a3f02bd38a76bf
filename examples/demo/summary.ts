/**
 * The storm's numbers: the summary table (printed by examples/demo.ts and
 * shown in the report) and the checks that decide the demo's exit status.
 * Everything here is computed from the run's measurements.
 */
import type { PhaseName, Settings, VariantResult } from "./storm.ts"
import { phaseNames } from "./storm.ts"

/** Nearest-rank percentile; 0 for no values. */
export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

/** Error tags in the order the table lists them. */
export const errorTags: ReadonlyArray<string> = [
  "TimeoutExceeded",
  "Unavailable",
  "ConnectionReset",
  "BulkheadFull",
  "CircuitOpen"
]

const shortPhase: Record<PhaseName, string> = {
  healthy: "healthy",
  "latency spike": "spike",
  outage: "outage",
  recovery: "recovery"
}

export const phaseLabel = (phase: PhaseName): string => shortPhase[phase]

/** One row of the summary table: a label, and one cell per variant. */
export interface Row {
  readonly label: string
  /** 0 for a headline row, 1 for a detail of the row above. */
  readonly depth: 0 | 1
  readonly cells: ReadonlyArray<string>
}

const ms = (value: number) => `${Math.round(value)} ms`
const seconds = (millis: number) => `${(millis / 1000).toFixed(millis < 10_000 ? 1 : 0)} s`
const phaseSeconds = (settings: Settings, phase: PhaseName) => {
  const p = settings.phases.find((candidate) => candidate.name === phase)!
  return (p.endMs - p.startMs) / 1000
}
/** Tags seen in any variant, in table order, then any others alphabetically. */
const tagsIn = (records: ReadonlyArray<Readonly<Record<string, number>>>) => {
  const seen = new Set(records.flatMap((record) => Object.keys(record)))
  return [...errorTags.filter((tag) => seen.has(tag)), ...[...seen].filter((tag) => !errorTags.includes(tag)).sort()]
}
const sum = (record: Readonly<Record<string, number>>) => Object.values(record).reduce((a, b) => a + b, 0)

export const summaryRows = (settings: Settings, results: ReadonlyArray<VariantResult>): Array<Row> => {
  const rows: Array<Row> = []
  const row = (label: string, depth: 0 | 1, cell: (result: VariantResult) => string | number) =>
    rows.push({ label, depth, cells: results.map((result) => String(cell(result))) })
  const trafficSeconds = settings.trafficMs / 1000

  row("requests sent", 0, (r) => r.recorder.sent)
  row("fresh answers (ok)", 0, (r) => r.recorder.ok)
  row("throughput, ok/s over the run", 1, (r) => (r.recorder.ok / trafficSeconds).toFixed(0))
  for (const phase of phaseNames) {
    row(`ok/s, ${phase}`, 1, (r) => (r.recorder.okByPhase[phase] / phaseSeconds(settings, phase)).toFixed(0))
  }
  row("served from the cache (fallback)", 0, (r) => r.variant === "pipeline" ? r.recorder.fallbacks : "-")
  for (const tag of tagsIn(results.map((r) => r.recorder.fallbackCauses))) {
    row(`after ${tag}`, 1, (r) => r.variant === "pipeline" ? r.recorder.fallbackCauses[tag] ?? 0 : "-")
  }
  row("errors returned to the client", 0, (r) => sum(r.recorder.errors))
  for (const tag of tagsIn(results.map((r) => r.recorder.errors))) {
    row(tag, 1, (r) => r.recorder.errors[tag] ?? 0)
  }
  row("latency p50 / p99, every answer", 0, (r) => `${ms(percentile(r.recorder.latencies, 50))} / ${ms(percentile(r.recorder.latencies, 99))}`)
  for (const phase of phaseNames) {
    row(`p99, ${phase}`, 1, (r) => ms(percentile(r.recorder.latenciesByPhase[phase], 99)))
  }
  row("calls that reached the dependency", 0, (r) => r.recorder.calls)
  row("during the outage (work wasted)", 1, (r) => r.recorder.callsByPhase.outage)
  row("dependency time spent on failed calls", 0, (r) => seconds(r.recorder.failedCallMs))
  row("during the outage", 1, (r) => seconds(r.recorder.failedCallMsByPhase.outage))
  row("calls in flight at the dependency, peak", 0, (r) => r.recorder.peakInFlight)
  row("retries", 0, (r) => r.retry === undefined ? "-" : r.retry.retries)
  row("circuit openings", 0, (r) => r.breaker === undefined ? "-" : r.breaker.openings)
  return rows
}

/** The table as text, for the terminal. */
export const formatTable = (settings: Settings, results: ReadonlyArray<VariantResult>): Array<string> => {
  const rows = summaryRows(settings, results)
  const labelWidth = Math.max(...rows.map((r) => r.label.length + 2 * r.depth)) + 2
  const cellWidth = Math.max(...results.map((r) => r.label.length), ...rows.flatMap((r) => r.cells.map((c) => c.length))) + 3
  const line = (label: string, cells: ReadonlyArray<string>) =>
    `  ${label.padEnd(labelWidth)}${cells.map((cell) => cell.padStart(cellWidth)).join("")}`
  return [
    line("", results.map((r) => r.label)),
    line("", results.map(() => "-".repeat(cellWidth - 3))),
    ...rows.map((r) => line(`${"  ".repeat(r.depth)}${r.label}`, r.cells))
  ]
}

export interface Check {
  readonly ok: boolean
  readonly text: string
}

/**
 * What the run must show for the demo to pass. The margins are wide: they
 * hold for any seed, and fail only when a guard stops doing its job.
 */
export const checks = (settings: Settings, results: ReadonlyArray<VariantResult>): Array<Check> => {
  const by = (variant: VariantResult["variant"]) => results.find((r) => r.variant === variant)!.recorder
  const off = by("unprotected")
  const bulkhead = by("bulkhead")
  const full = by("pipeline")
  const p99 = (latencies: ReadonlyArray<number>) => percentile(latencies, 99)
  return [
    {
      ok: full.callsByPhase.outage * 10 <= off.callsByPhase.outage,
      text: `calls sent to the dead dependency during the outage: ${full.callsByPhase.outage} with the full pipeline, ` +
        `${off.callsByPhase.outage} unprotected`
    },
    {
      ok: full.failedCallMs * 10 <= off.failedCallMs,
      text: `dependency time spent on failed calls: ${seconds(full.failedCallMs)} with the full pipeline, ` +
        `${seconds(off.failedCallMs)} unprotected`
    },
    {
      ok: p99(full.latencies) < p99(off.latencies) && p99(full.latencies) < settings.clientTimeoutMs,
      text: `p99 latency: ${ms(p99(full.latencies))} with the full pipeline (the client gives up at ${ms(settings.clientTimeoutMs)}), ` +
        `${ms(p99(off.latencies))} unprotected`
    },
    {
      ok: full.ok + full.fallbacks === full.sent && sum(off.errors) > 0,
      text: `every request got a price with the full pipeline (${full.ok} fresh, ${full.fallbacks} from the cache); ` +
        `unprotected, ${sum(off.errors)} of ${off.sent} failed`
    },
    {
      ok: bulkhead.okByPhase["latency spike"] > 2 * off.okByPhase["latency spike"],
      text: `fresh answers during the latency spike: ${bulkhead.okByPhase["latency spike"]} with the bulkhead ` +
        `(the dependency stays within its capacity), ${off.okByPhase["latency spike"]} unprotected`
    },
    {
      ok: bulkhead.peakInFlight <= settings.bulkhead.maxConcurrent &&
        full.peakInFlight <= settings.pipeline.bulkhead.maxConcurrent &&
        off.peakInFlight > settings.bulkhead.maxConcurrent,
      text: `calls in flight at the dependency: at most ${bulkhead.peakInFlight} (bulkhead only) and ${full.peakInFlight} ` +
        `(full pipeline), ${off.peakInFlight} unprotected`
    }
  ]
}
