/**
 * The demo's HTML report is for people, so it is checked the way a person
 * sees it: rendered in a real browser (Debian's chromium, driven by
 * playwright-core), with every chart drawn, the phases marked, the summary
 * table present, and nothing logged to the console or fetched from anywhere.
 * The storm itself is checked for determinism: a seed gives the same report.
 *
 * Without /usr/bin/chromium the browser tests are skipped locally, and fail
 * under CI (CI=true), where .ci/run installs chromium.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { type Browser, chromium, type Page } from "playwright-core"
import { renderReport } from "../../examples/demo/report.ts"
import { makeSettings, runStorm, type VariantResult, variantLabels, variantNames } from "../../examples/demo/storm.ts"
import { checks, summaryRows } from "../../examples/demo/summary.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const executablePath = "/usr/bin/chromium"
const underCI = process.env.CI === "true" || process.env.CI === "1"
const haveChromium = existsSync(executablePath)

const fastStorm = (seed: number) => {
  const settings = makeSettings({ seed, fast: true })
  return Effect.runPromise(runStorm(settings)).then((results) => ({ settings, results }))
}

describe("the storm is deterministic", () => {
  it("the same seed gives the same report, byte for byte; another seed, other numbers", async () => {
    const [a, b, c] = await Promise.all([fastStorm(3), fastStorm(3), fastStorm(4)])
    const html = (run: typeof a) => renderReport(run.settings, run.results)
    assert.strictEqual(html(a), html(b))
    assert.notStrictEqual(html(a), html(c))
    assert.notStrictEqual(JSON.stringify(summaryRows(a.settings, a.results)), JSON.stringify(summaryRows(c.settings, c.results)))
  })

  it("the three variants get the same traffic", async () => {
    const { results } = await fastStorm(5)
    const sent = results.map((r) => r.recorder.sent)
    assert.isAbove(sent[0], 1000)
    assert.deepStrictEqual(sent, [sent[0], sent[0], sent[0]])
  })
})

if (!haveChromium && underCI) {
  describe("the report in a browser", () => {
    it("needs chromium", () => {
      assert.fail(
        `${executablePath} is missing, and CI=true: install Debian's chromium package (apt-get install -y chromium; ` +
          ".ci/run does it when it runs as root) so that the demo's report can be checked in a browser"
      )
    })
  })
}

describe.skipIf(!haveChromium)("the report in a browser (Debian's chromium, headless)", () => {
  let browser: Browser
  let page: Page
  let results: ReadonlyArray<VariantResult>
  const consoleErrors: Array<string> = []
  const pageErrors: Array<string> = []
  const fetched: Array<string> = []

  beforeAll(async () => {
    const storm = await fastStorm(1)
    results = storm.results
    const file = join(root, ".cache", "storm-report-test.html")
    mkdirSync(join(root, ".cache"), { recursive: true })
    writeFileSync(file, renderReport(storm.settings, storm.results))
    browser = await chromium.launch({
      executablePath,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync"
      ]
    })
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } })
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(message.text())
    })
    page.on("pageerror", (error) => pageErrors.push(String(error)))
    page.on("request", (request) => {
      if (!request.url().startsWith("file:")) fetched.push(request.url())
    })
    const url = pathToFileURL(file).href
    await page.goto(url, { waitUntil: "load" })
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
  })

  // Browser-side code is passed as a string, so that nothing the test runner
  // adds to compiled functions reaches the page.
  const inPage = <A>(expression: string): Promise<A> => page.evaluate(expression) as Promise<A>

  interface ChartInfo {
    readonly kind: string
    readonly variant: string
    readonly width: number
    readonly height: number
    readonly plotWidth: number
    readonly markers: number
    readonly markerHeights: ReadonlyArray<number>
    readonly phaseBands: number
    readonly series: ReadonlyArray<{ readonly name: string; readonly points: number; readonly width: number; readonly height: number }>
    readonly bars: number
    readonly drawnBars: number
    readonly bands: ReadonlyArray<{ readonly state: string; readonly width: number }>
  }

  const charts = () =>
    inPage<ReadonlyArray<ChartInfo>>(`(() => Array.from(document.querySelectorAll("svg[data-chart]")).map((svg) => {
      const box = (el) => el.getBBox()
      const rect = svg.getBoundingClientRect()
      const frame = svg.querySelector(".x-axis .axis")
      return {
        kind: svg.dataset.chart,
        variant: svg.dataset.variant,
        width: rect.width,
        height: rect.height,
        plotWidth: frame ? box(frame).width : 0,
        markers: svg.querySelectorAll(".phase-marker").length,
        markerHeights: Array.from(svg.querySelectorAll(".phase-marker")).map((m) => box(m).height),
        phaseBands: svg.querySelectorAll(".phase-band").length,
        series: Array.from(svg.querySelectorAll("path.series")).map((p) => ({
          name: p.dataset.series,
          points: (p.getAttribute("d").match(/[ML]/g) || []).length,
          width: box(p).width,
          height: box(p).height
        })),
        bars: svg.querySelectorAll("rect.bar").length,
        drawnBars: Array.from(svg.querySelectorAll("rect.bar")).filter((r) => box(r).width > 0 && box(r).height > 0).length,
        bands: Array.from(svg.querySelectorAll("rect.band")).map((r) => ({ state: r.dataset.state, width: box(r).width }))
      }
    }))()`)

  it("loads with no console error, no page error, and fetches nothing", () => {
    assert.deepStrictEqual(consoleErrors, [])
    assert.deepStrictEqual(pageErrors, [])
    assert.deepStrictEqual(fetched, [])
  })

  it("draws one chart per measure and variant, and the breaker's for the full pipeline", async () => {
    const drawn = await charts()
    const expected = [
      ...["throughput", "inflight", "latency", "rejections"].flatMap((kind) => variantNames.map((variant) => `${kind}/${variant}`)),
      "breaker/pipeline"
    ]
    assert.deepStrictEqual(drawn.map((c) => `${c.kind}/${c.variant}`).sort(), [...expected].sort())
    for (const chart of drawn) {
      const name = `${chart.kind}/${chart.variant}`
      assert.isAbove(chart.width, 250, `${name} is laid out`)
      assert.isAbove(chart.height, 60, `${name} is laid out`)
    }
  })

  it("draws every line over the whole run", async () => {
    const drawn = await charts()
    const lines = drawn.filter((c) => c.kind === "throughput" || c.kind === "inflight" || c.kind === "latency")
    for (const chart of lines) {
      assert.isAbove(chart.series.length, 0, `${chart.kind}/${chart.variant} has a series`)
      for (const series of chart.series) {
        const name = `${chart.kind}/${chart.variant}/${series.name}`
        assert.isAbove(series.points, 50, `${name}: points in the path`)
        assert.isAbove(series.width, chart.plotWidth * 0.6, `${name}: spans the run`)
        assert.isAbove(series.height, 0, `${name}: moves`)
      }
    }
    const pipeline = drawn.find((c) => c.kind === "throughput" && c.variant === "pipeline")!
    assert.deepStrictEqual(pipeline.series.map((s) => s.name), ["ok", "fallback"])
  })

  it("stacks the errors and rejections of every variant in bars", async () => {
    for (const chart of (await charts()).filter((c) => c.kind === "rejections")) {
      assert.isAbove(chart.bars, 10, `${chart.variant}: bars`)
      assert.strictEqual(chart.drawnBars, chart.bars, `${chart.variant}: every bar has an area`)
    }
  })

  it("shows the breaker opening and closing again", async () => {
    const breaker = (await charts()).find((c) => c.kind === "breaker")!
    const states = new Set(breaker.bands.map((band) => band.state))
    assert.isTrue(states.has("Closed") && states.has("Open") && states.has("HalfOpen"), [...states].join(", "))
    assert.isTrue(breaker.bands.every((band) => band.width > 0))
    assert.strictEqual(breaker.bands.at(-1)!.state, "Closed")
    assert.isAbove(breaker.series[0].points, 4)
  })

  it("marks the phase boundaries in every chart", async () => {
    for (const chart of await charts()) {
      assert.strictEqual(chart.phaseBands, 4, `${chart.kind}/${chart.variant}: one band per phase`)
      assert.strictEqual(chart.markers, 3, `${chart.kind}/${chart.variant}: a marker at each boundary`)
      for (const height of chart.markerHeights) assert.isAbove(height, 40)
    }
  })

  it("shows the summary table and the checks, with the run's numbers", async () => {
    const table = await inPage<{ readonly head: ReadonlyArray<string>; readonly rows: ReadonlyArray<ReadonlyArray<string>>; readonly checks: ReadonlyArray<string> }>(
      `(() => {
        const table = document.querySelector("table#summary")
        const cells = (row) => Array.from(row.cells).map((cell) => cell.textContent.trim())
        return {
          head: table ? cells(table.tHead.rows[0]) : [],
          rows: table ? Array.from(table.tBodies[0].rows).map(cells) : [],
          checks: Array.from(document.querySelectorAll("#checks li")).map((li) => li.className)
        }
      })()`
    )
    assert.deepStrictEqual(table.head, ["", ...variantNames.map((v) => variantLabels[v])])
    const settings = makeSettings({ seed: 1, fast: true })
    assert.deepStrictEqual(table.rows, summaryRows(settings, results).map((row) => [row.label, ...row.cells]))
    assert.deepStrictEqual(table.rows[0], ["requests sent", ...results.map((r) => String(r.recorder.sent))])
    assert.deepStrictEqual(table.checks, checks(settings, results).map(() => "ok"))
  })
})
