/**
 * The storm's HTML report: one self-contained file (inline CSS and SVG, no
 * script, no font, nothing fetched) that a person opens in a browser. The
 * SVG is written by hand here, with no dependency.
 *
 * One row of charts per measure, one column per variant, the same scale
 * across a row so that the columns compare at a glance:
 *
 * - fresh answers and fallbacks per second
 * - calls in flight at the dependency (peak per time bucket)
 * - latency p50 and p99 per time bucket (log scale)
 * - errors and rejections per second, by error tag (stacked bars; for the
 *   full pipeline, the errors a fallback answered for)
 * - the circuit breaker's state (full pipeline only)
 *
 * Every chart shades the phases and marks their boundaries.
 */
import type { PhaseName, Settings, VariantResult } from "./storm.ts"
import { phaseNames, variantLabels } from "./storm.ts"
import { checks, errorTags, percentile, phaseLabel, summaryRows } from "./summary.ts"

// -----------------------------------------------------------------------------
// helpers
// -----------------------------------------------------------------------------

const escape = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/** Coordinates with one decimal: small files, no visible loss. */
const n = (value: number): string => String(Math.round(value * 10) / 10)

/** A step of 1, 2 or 5 times a power of ten giving about `ticks` intervals up to `max`. */
const niceStep = (max: number, ticks: number): number => {
  const raw = max / ticks
  const power = 10 ** Math.floor(Math.log10(raw))
  const multiple = [1, 2, 5, 10].find((m) => m * power >= raw) ?? 10
  return multiple * power
}

const niceMax = (max: number): number => {
  if (max <= 0) return 1
  const step = niceStep(max, 4)
  return Math.ceil(max / step) * step
}

export const colors = {
  ok: "#2b8a3e",
  fallback: "#1c7ed6",
  p50: "#5f3dc4",
  p99: "#e8590c",
  inFlight: "#0b7285",
  reference: "#868e96",
  tags: {
    TimeoutExceeded: "#e03131",
    Unavailable: "#f08c00",
    ConnectionReset: "#845ef7",
    BulkheadFull: "#ae3ec9",
    CircuitOpen: "#1971c2"
  } as Record<string, string>,
  other: "#495057",
  states: { Closed: "#b2f2bb", Open: "#ffa8a8", HalfOpen: "#ffe066", Isolated: "#ced4da", Disabled: "#e9ecef" } as Record<
    string,
    string
  >,
  phases: { healthy: "#f8f9fa", "latency spike": "#fff9db", outage: "#fff0f0", recovery: "#ebfbee" } as Record<PhaseName, string>
}

const tagColor = (tag: string) => colors.tags[tag] ?? colors.other

// -----------------------------------------------------------------------------
// the chart frame: axes, phases
// -----------------------------------------------------------------------------

interface Frame {
  readonly width: number
  readonly height: number
  readonly left: number
  readonly top: number
  readonly plotWidth: number
  readonly plotHeight: number
  readonly spanMs: number
  readonly x: (ms: number) => number
  readonly y: (value: number) => number
}

const makeFrame = (
  spanMs: number,
  height: number,
  scale: { readonly max: number; readonly log?: boolean; readonly min?: number }
): Frame => {
  const width = 420
  const left = 56
  const right = 12
  const top = 18
  const bottom = 24
  const plotWidth = width - left - right
  const plotHeight = height - top - bottom
  const x = (ms: number) => left + (Math.max(0, Math.min(spanMs, ms)) / spanMs) * plotWidth
  const y = scale.log === true
    ? (value: number) => {
      const lo = Math.log10(scale.min ?? 1)
      const hi = Math.log10(scale.max)
      const v = Math.log10(Math.max(scale.min ?? 1, Math.min(scale.max, value)))
      return top + plotHeight - ((v - lo) / (hi - lo)) * plotHeight
    }
    : (value: number) => top + plotHeight - (Math.max(0, Math.min(scale.max, value)) / scale.max) * plotHeight
  return { width, height, left, top, plotWidth, plotHeight, spanMs, x, y }
}

/** Phase bands, boundary markers and names. */
const phaseLayer = (frame: Frame, settings: Settings): string => {
  const parts: Array<string> = []
  for (const phase of settings.phases) {
    const x0 = frame.x(phase.startMs)
    const x1 = frame.x(phase.endMs)
    parts.push(
      `<rect class="phase-band" data-phase="${escape(phase.name)}" x="${n(x0)}" y="${frame.top}" width="${n(x1 - x0)}" ` +
        `height="${frame.plotHeight}" fill="${colors.phases[phase.name]}"/>`,
      `<text class="phase-label" x="${n((x0 + x1) / 2)}" y="${frame.top - 5}" text-anchor="middle">${escape(phaseLabel(phase.name))}</text>`
    )
    if (phase.startMs > 0) {
      parts.push(
        `<line class="phase-marker" data-phase="${escape(phase.name)}" x1="${n(x0)}" x2="${n(x0)}" y1="${frame.top}" ` +
          `y2="${frame.top + frame.plotHeight}"/>`
      )
    }
  }
  // After the traffic: the last answers arrive.
  const end = frame.x(settings.trafficMs)
  parts.push(
    `<rect class="drain-band" x="${n(end)}" y="${frame.top}" width="${n(frame.left + frame.plotWidth - end)}" height="${frame.plotHeight}"/>`
  )
  return `<g class="phases">${parts.join("")}</g>`
}

const xAxis = (frame: Frame): string => {
  const step = niceStep(frame.spanMs / 1000, 6)
  const parts: Array<string> = []
  const bottom = frame.top + frame.plotHeight
  for (let s = 0; s * 1000 <= frame.spanMs + 1e-9; s += step) {
    const x = frame.x(s * 1000)
    parts.push(
      `<line class="tick" x1="${n(x)}" x2="${n(x)}" y1="${bottom}" y2="${bottom + 4}"/>`,
      `<text class="tick-label" x="${n(x)}" y="${bottom + 15}" text-anchor="middle">${Number(s.toFixed(3))} s</text>`
    )
  }
  parts.push(`<line class="axis" x1="${frame.left}" x2="${frame.left + frame.plotWidth}" y1="${bottom}" y2="${bottom}"/>`)
  return `<g class="x-axis">${parts.join("")}</g>`
}

const yAxis = (frame: Frame, ticks: ReadonlyArray<number>, format: (value: number) => string): string => {
  const parts: Array<string> = []
  for (const value of ticks) {
    const y = frame.y(value)
    parts.push(
      `<line class="grid" x1="${frame.left}" x2="${frame.left + frame.plotWidth}" y1="${n(y)}" y2="${n(y)}"/>`,
      `<text class="tick-label" x="${frame.left - 5}" y="${n(y + 3.5)}" text-anchor="end">${escape(format(value))}</text>`
    )
  }
  parts.push(`<line class="axis" x1="${frame.left}" x2="${frame.left}" y1="${frame.top}" y2="${frame.top + frame.plotHeight}"/>`)
  return `<g class="y-axis">${parts.join("")}</g>`
}

const linearTicks = (max: number): Array<number> => {
  const step = niceStep(max, 4)
  const ticks: Array<number> = []
  for (let v = 0; v <= max + 1e-9; v += step) ticks.push(Number(v.toFixed(6)))
  return ticks
}

/** A polyline over the buckets; a bucket without a value (NaN) breaks the line. */
const linePath = (frame: Frame, bucketMs: number, values: ReadonlyArray<number>): string => {
  let d = ""
  let pen = false
  values.forEach((value, i) => {
    if (Number.isNaN(value)) {
      pen = false
      return
    }
    const x = frame.x((i + 0.5) * bucketMs)
    d += `${pen ? "L" : "M"}${n(x)} ${n(frame.y(value))}`
    pen = true
  })
  return d
}

const reference = (frame: Frame, value: number, label: string): string => {
  const y = frame.y(value)
  return `<g class="reference"><line x1="${frame.left}" x2="${frame.left + frame.plotWidth}" y1="${n(y)}" y2="${n(y)}"/>` +
    `<text x="${frame.left + frame.plotWidth - 3}" y="${n(y - 3)}" text-anchor="end">${escape(label)}</text></g>`
}

interface Chart {
  readonly kind: string
  readonly variant: VariantResult
  readonly title: string
  readonly frame: Frame
  readonly body: string
}

const svg = (chart: Chart, settings: Settings, axes: string): string =>
  `<figure class="chart"><figcaption>${escape(chart.variant.label)}</figcaption>` +
  `<svg xmlns="http://www.w3.org/2000/svg" data-chart="${chart.kind}" data-variant="${chart.variant.variant}" ` +
  `viewBox="0 0 ${chart.frame.width} ${chart.frame.height}" role="img" aria-label="${escape(`${chart.title}, ${chart.variant.label}`)}">` +
  `<title>${escape(`${chart.title}, ${chart.variant.label}`)}</title>` +
  phaseLayer(chart.frame, settings) + axes + xAxis(chart.frame) + chart.body +
  `</svg></figure>`

const legend = (items: ReadonlyArray<readonly [string, string, ("line" | "dash" | "box")?]>): string =>
  `<p class="legend">${
    items.map(([label, color, shape]) =>
      `<span><i class="${shape ?? "line"}" style="--c:${color}"></i>${escape(label)}</span>`
    ).join("")
  }</p>`

// -----------------------------------------------------------------------------
// the rows
// -----------------------------------------------------------------------------

interface ChartRow {
  readonly kind: string
  readonly title: string
  readonly explanation: string
  readonly legend: string
  readonly charts: ReadonlyArray<string>
}

const spanOf = (result: VariantResult) => result.recorder.buckets * result.recorder.settings.bucketMs

const throughputRow = (settings: Settings, results: ReadonlyArray<VariantResult>): ChartRow => {
  const perSecond = (count: number) => count / (settings.bucketMs / 1000)
  const max = niceMax(Math.max(...results.flatMap((r) => [...r.recorder.okPerBucket, ...r.recorder.fallbackPerBucket].map(perSecond))))
  const title = "Answers per second"
  return {
    kind: "throughput",
    title,
    explanation: "Fresh prices from the dependency, and cached prices served by the fallback, per second of the run.",
    legend: legend([["fresh answers (ok) /s", colors.ok], ["from the cache /s", colors.fallback]]),
    charts: results.map((variant) => {
      const frame = makeFrame(spanOf(variant), 190, { max })
      const series = [
        `<path class="series" data-series="ok" d="${linePath(frame, settings.bucketMs, variant.recorder.okPerBucket.map(perSecond))}" stroke="${colors.ok}"/>`
      ]
      if (variant.recorder.fallbacks > 0) {
        series.push(
          `<path class="series" data-series="fallback" d="${
            linePath(frame, settings.bucketMs, variant.recorder.fallbackPerBucket.map(perSecond))
          }" stroke="${colors.fallback}"/>`
        )
      }
      return svg(
        { kind: "throughput", variant, title, frame, body: series.join("") },
        settings,
        yAxis(frame, linearTicks(max), String)
      )
    })
  }
}

const inFlightRow = (settings: Settings, results: ReadonlyArray<VariantResult>): ChartRow => {
  const max = niceMax(Math.max(settings.dependency.capacity, ...results.flatMap((r) => r.recorder.inFlightPeak)))
  const title = "Calls in flight at the dependency"
  return {
    kind: "inflight",
    title,
    explanation: `The most calls open at the dependency within each ${settings.bucketMs} ms. Past its ` +
      `${settings.dependency.capacity} workers every new call is slowed down more than in proportion.`,
    legend: legend([["calls in flight (peak)", colors.inFlight], [`dependency capacity (${settings.dependency.capacity} workers)`, colors.reference, "dash"]]),
    charts: results.map((variant) => {
      const frame = makeFrame(spanOf(variant), 190, { max })
      const body = reference(frame, settings.dependency.capacity, `capacity ${settings.dependency.capacity}`) +
        `<path class="series" data-series="inflight" d="${linePath(frame, settings.bucketMs, variant.recorder.inFlightPeak)}" stroke="${colors.inFlight}"/>`
      return svg({ kind: "inflight", variant, title, frame, body }, settings, yAxis(frame, linearTicks(max), String))
    })
  }
}

const latencyRow = (settings: Settings, results: ReadonlyArray<VariantResult>): ChartRow => {
  const quantiles = (variant: VariantResult, p: number) =>
    variant.recorder.latencyPerBucket.map((values) => values.length === 0 ? Number.NaN : Math.max(1, percentile(values, p)))
  const max = 10 ** Math.ceil(Math.log10(Math.max(settings.clientTimeoutMs, ...results.flatMap((r) => r.recorder.latencies))))
  const ticks: Array<number> = []
  for (let v = 1; v <= max; v *= 10) ticks.push(v)
  const title = "Latency as the client sees it"
  return {
    kind: "latency",
    title,
    explanation: `p50 and p99 of the requests answered within each ${settings.bucketMs} ms, errors included, on a log scale. ` +
      `The client gives up at ${settings.clientTimeoutMs} ms.`,
    legend: legend([["p50", colors.p50], ["p99", colors.p99], ["client timeout", colors.reference, "dash"]]),
    charts: results.map((variant) => {
      const frame = makeFrame(spanOf(variant), 190, { max, log: true, min: 1 })
      const body = reference(frame, settings.clientTimeoutMs, "client timeout") +
        `<path class="series" data-series="p99" d="${linePath(frame, settings.bucketMs, quantiles(variant, 99))}" stroke="${colors.p99}"/>` +
        `<path class="series" data-series="p50" d="${linePath(frame, settings.bucketMs, quantiles(variant, 50))}" stroke="${colors.p50}"/>`
      return svg({ kind: "latency", variant, title, frame, body }, settings, yAxis(frame, ticks, (v) => v >= 1000 ? `${v / 1000} s` : `${v} ms`))
    })
  }
}

const rejectionsRow = (settings: Settings, results: ReadonlyArray<VariantResult>): ChartRow => {
  const perSecond = (count: number) => count / (settings.bucketMs / 1000)
  const seen = new Set(results.flatMap((r) => [...r.recorder.failuresPerBucket.keys()]))
  const tags = [...errorTags.filter((tag) => seen.has(tag)), ...[...seen].filter((tag) => !errorTags.includes(tag)).sort()]
  const totals = (variant: VariantResult) =>
    variant.recorder.okPerBucket.map((_, b) =>
      tags.reduce((total, tag) => total + (variant.recorder.failuresPerBucket.get(tag)?.[b] ?? 0), 0)
    )
  const max = niceMax(Math.max(1, ...results.flatMap((r) => totals(r).map(perSecond))))
  const title = "Errors and rejections per second, by type"
  return {
    kind: "rejections",
    title,
    explanation: "Stacked per error tag. For the full pipeline these are the errors its fallback answered from the cache; " +
      "the client saw none of them.",
    legend: legend(tags.map((tag) => [tag, tagColor(tag), "box"] as const)),
    charts: results.map((variant) => {
      const frame = makeFrame(spanOf(variant), 190, { max })
      const barWidth = Math.max(0.5, frame.plotWidth / variant.recorder.buckets - 0.3)
      const bars: Array<string> = []
      variant.recorder.okPerBucket.forEach((_, b) => {
        let stacked = 0
        const rects: Array<string> = []
        const tip: Array<string> = []
        for (const tag of tags) {
          const count = variant.recorder.failuresPerBucket.get(tag)?.[b] ?? 0
          if (count === 0) continue
          const y0 = frame.y(perSecond(stacked))
          stacked += count
          const y1 = frame.y(perSecond(stacked))
          rects.push(
            `<rect class="bar" data-tag="${escape(tag)}" x="${n(frame.x(b * settings.bucketMs))}" y="${n(y1)}" ` +
              `width="${n(barWidth)}" height="${n(Math.max(0.3, y0 - y1))}" fill="${tagColor(tag)}"/>`
          )
          tip.push(`${tag} ${perSecond(count)}/s`)
        }
        if (rects.length > 0) {
          const at = (b * settings.bucketMs / 1000).toFixed(2)
          bars.push(`<g><title>${escape(`${at} s: ${tip.join(", ")}`)}</title>${rects.join("")}</g>`)
        }
      })
      return svg(
        { kind: "rejections", variant, title, frame, body: `<g class="bars">${bars.join("")}</g>` },
        settings,
        yAxis(frame, linearTicks(max), String)
      )
    })
  }
}

const breakerRow = (settings: Settings, results: ReadonlyArray<VariantResult>): ChartRow => {
  const title = "Circuit breaker state"
  const levels = ["Closed", "HalfOpen", "Open"] as const
  return {
    kind: "breaker",
    title,
    explanation: `Open: calls are refused at once and answered from the cache; after ${settings.pipeline.breaker.openForMs} ms ` +
      `one probe call may run (HalfOpen); ${settings.pipeline.breaker.successesToClose} successful probes close the circuit.`,
    legend: legend(levels.map((state) => [state, colors.states[state], "box"] as const)),
    charts: results.map((variant) => {
      if (variant.breaker === undefined) {
        return `<figure class="chart"><figcaption>${escape(variant.label)}</figcaption>` +
          `<div class="no-chart">no circuit breaker</div></figure>`
      }
      const frame = makeFrame(spanOf(variant), 120, { max: levels.length - 1 })
      // Closed until the first transition, then each state until the next one.
      const steps = [{ atMs: 0, to: "Closed" as string }, ...variant.recorder.breakerTransitions]
      const segments = steps.map((step, i) => ({
        state: step.to,
        start: step.atMs,
        end: i + 1 < steps.length ? steps[i + 1].atMs : frame.spanMs
      }))
      const band = segments.map((s) =>
        `<rect class="band" data-state="${s.state}" x="${n(frame.x(s.start))}" y="${frame.top}" ` +
        `width="${n(Math.max(0.6, frame.x(s.end) - frame.x(s.start)))}" height="${frame.plotHeight}" fill="${
          colors.states[s.state] ?? colors.other
        }"><title>${escape(`${s.state} from ${(s.start / 1000).toFixed(2)} s to ${(s.end / 1000).toFixed(2)} s`)}</title></rect>`
      ).join("")
      const level = (state: string) => Math.max(0, levels.indexOf(state as (typeof levels)[number]))
      let d = ""
      segments.forEach((s, i) => {
        const y = n(frame.y(level(s.state)))
        d += `${i === 0 ? "M" : "L"}${n(frame.x(s.start))} ${y}L${n(frame.x(s.end))} ${y}`
      })
      const ticks = levels.map((_, i) => i)
      return svg(
        { kind: "breaker", variant, title, frame, body: `<g class="bands">${band}</g><path class="series step" data-series="state" d="${d}"/>` },
        settings,
        yAxis(frame, ticks, (i) => levels[i])
      )
    })
  }
}

// -----------------------------------------------------------------------------
// the page
// -----------------------------------------------------------------------------

const style = `
:root { color-scheme: light; --ink: #212529; --muted: #868e96; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #fff; }
main { max-width: 1340px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 4px; }
p.lead { color: #495057; margin: 0 0 16px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e9ecef; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #adb5bd; }
tr.depth-1 td:first-child { padding-left: 28px; color: #495057; }
table.phases td { text-align: left; white-space: normal; }
ul.checks { list-style: none; padding: 0; }
ul.checks li { margin: 2px 0; }
ul.checks li.ok::before { content: "ok"; color: #2b8a3e; font-weight: 600; display: inline-block; width: 44px; }
ul.checks li.fail::before { content: "FAIL"; color: #e03131; font-weight: 600; display: inline-block; width: 44px; }
.row-explanation { color: #495057; margin: 0 0 6px; max-width: 900px; }
.grid { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 14px; }
figure.chart { margin: 0; border: 1px solid #e9ecef; border-radius: 6px; padding: 6px 6px 2px; }
figure.chart figcaption { font-weight: 600; font-size: 13px; margin: 0 0 2px 4px; }
figure.chart svg { width: 100%; height: auto; display: block; }
.no-chart { color: var(--muted); font-style: italic; padding: 30px 10px; text-align: center; }
.legend { margin: 0 0 8px; font-size: 13px; color: #495057; }
.legend span { margin-right: 16px; white-space: nowrap; }
.legend i { display: inline-block; width: 18px; height: 0; border-top: 2.5px solid var(--c); vertical-align: middle; margin-right: 6px; }
.legend i.dash { border-top-style: dashed; }
.legend i.box { height: 11px; border: 0; background: var(--c); }
svg text { font: 10px system-ui, sans-serif; fill: #495057; }
svg .phase-label { font-size: 10px; fill: #868e96; }
svg .phase-marker { stroke: #adb5bd; stroke-dasharray: 4 3; stroke-width: 1; }
svg .drain-band { fill: #f1f3f5; }
svg .axis, svg .tick { stroke: #868e96; stroke-width: 1; }
svg .grid { stroke: #dee2e6; stroke-width: 0.6; }
svg .series { fill: none; stroke-width: 1.6; stroke-linejoin: round; }
svg .series.step { stroke: #343a40; stroke-width: 1.2; }
svg .reference line { stroke: #868e96; stroke-dasharray: 5 4; stroke-width: 1; }
svg .reference text { fill: #868e96; font-size: 9px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
`

const summaryTable = (settings: Settings, results: ReadonlyArray<VariantResult>): string => {
  const rows = summaryRows(settings, results)
  const head = `<thead><tr><th></th>${results.map((r) => `<th>${escape(r.label)}</th>`).join("")}</tr></thead>`
  const body = rows.map((row) =>
    `<tr class="depth-${row.depth}"><td>${escape(row.label)}</td>${row.cells.map((c) => `<td>${escape(c)}</td>`).join("")}</tr>`
  ).join("")
  return `<table id="summary">${head}<tbody>${body}</tbody></table>`
}

const seconds = (ms: number) => `${Number((ms / 1000).toFixed(1))} s`

/** Renders the whole report. Deterministic: the same run gives the same bytes. */
export const renderReport = (settings: Settings, results: ReadonlyArray<VariantResult>): string => {
  const sent = results[0]?.recorder.sent ?? 0
  const p = settings.pipeline
  const phaseRows = settings.phases.map((phase) =>
    `<tr><td style="background:${colors.phases[phase.name]}">${escape(phase.name)}</td>` +
    `<td>${seconds(phase.startMs)} to ${seconds(phase.endMs)}</td><td>${escape(phase.description)}</td></tr>`
  ).join("")
  const variants: Record<string, string> = {
    unprotected: `Only the client's own timeout (${settings.clientTimeoutMs} ms).`,
    bulkhead: `A bulkhead: ${settings.bulkhead.maxConcurrent} calls at once, ${settings.bulkhead.maxQueue} waiting ` +
      `for at most ${settings.bulkhead.queueTimeoutMs} ms; the rest refused at once.`,
    pipeline: `Outermost first: fallback to the last good price, overall timeout ${p.overallTimeoutMs} ms, bulkhead ` +
      `${p.bulkhead.maxConcurrent} + ${p.bulkhead.maxQueue} waiting, retry (${p.retry.maxAttempts} attempts, ` +
      `${p.retry.baseMs} to ${p.retry.maxMs} ms backoff, full jitter), circuit breaker (${p.breaker.consecutive} failures in a row ` +
      `or ${p.breaker.failureRate * 100}% of ${p.breaker.minimumCalls}+ calls in ${p.breaker.windowMs} ms; open ` +
      `${p.breaker.openForMs} ms), attempt timeout ${p.attemptTimeoutMs} ms.`
  }
  const variantList = results.map((r) => `<li><b>${escape(variantLabels[r.variant])}</b>: ${escape(variants[r.variant])}</li>`).join("")
  const checkList = checks(settings, results).map((c) => `<li class="${c.ok ? "ok" : "fail"}">${escape(c.text)}</li>`).join("")
  const rows = [
    throughputRow(settings, results),
    inFlightRow(settings, results),
    latencyRow(settings, results),
    rejectionsRow(settings, results),
    breakerRow(settings, results)
  ]
  const chartRows = rows.map((row) =>
    `<section class="chart-row" data-row="${row.kind}"><h2>${escape(row.title)}</h2>` +
    `<p class="row-explanation">${escape(row.explanation)}</p>${row.legend}` +
    `<div class="grid">${row.charts.join("")}</div></section>`
  ).join("\n")

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bulwark storm report (seed ${settings.seed}${settings.fast ? ", fast" : ""})</title>
<style>${style}</style>
</head>
<body>
<main>
<h1>Bulwark storm report</h1>
<p class="lead">The same ${sent} requests (${settings.requestsPerSecond} per second on average, seeded Poisson arrivals, seed
${settings.seed}${settings.fast ? ", --fast" : ""}) sent to a pricing service that degrades in phases, three ways. Simulated on
Effect's virtual clock: rerun <code>npm run demo --${settings.fast ? " --fast" : ""} --seed=${settings.seed}</code> and every number
here comes out the same.</p>
<h2>The storm</h2>
<table class="phases"><tbody>${phaseRows}</tbody></table>
<h2>The variants</h2>
<ul>${variantList}</ul>
<h2>Summary</h2>
${summaryTable(settings, results)}
<ul class="checks" id="checks">${checkList}</ul>
${chartRows}
<footer>Written by examples/demo.ts. Phases: ${phaseNames.map((name) => escape(name)).join(", ")}; the grey band at the end of each
chart is the last second, after the traffic stops, while the last requests are answered.</footer>
</main>
</body>
</html>
`
}
