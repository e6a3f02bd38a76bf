/**
 * Bulwark demo: a storm on one dependency, the same traffic three ways.
 *
 *   npm run demo                          50 s of traffic, simulated in a few seconds
 *   npm run demo -- --fast                22 s of traffic, in about a second (the CI smoke run)
 *   npm run demo -- --seed=7              other arrivals, latencies and faults
 *   npm run demo -- --report=out.html     where to write the report (default .cache/storm-report.html)
 *
 * A service sends its clients' requests (200 a second, seeded Poisson
 * arrivals) to a pricing dependency with 32 workers. The dependency goes
 * through four phases: healthy; a latency spike that gives it more work than
 * its workers can take; an outage in which it refuses some calls and hangs on
 * the others; and a recovery. Past its capacity it thrashes: every call it
 * takes on slows each new one down more than in proportion, so a caller that
 * keeps sending makes things worse. Every client gives up after 1 s.
 *
 * The same traffic goes through three variants: unprotected (the client's
 * timeout only), a bulkhead only, and the full pipeline (fallback to the
 * last good price, overall timeout, bulkhead, retry, circuit breaker,
 * attempt timeout; see `fullPipeline` in examples/demo/storm.ts). The demo
 * prints a summary table, writes an HTML report with charts over time, and
 * exits with status 1 when the numbers do not show the protection helping,
 * so CI can use it as a smoke test.
 *
 * Time is virtual (Effect's TestClock) and all randomness comes from Effect's
 * seeded Random, so a seed gives the same numbers on every machine; the
 * reasons are in examples/demo/storm.ts.
 */
import { Effect } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { renderReport } from "./demo/report.ts"
import { makeSettings, phaseAt, type Progress, runStorm, type Settings, variantLabels } from "./demo/storm.ts"
import { checks, formatTable } from "./demo/summary.ts"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")

const usage = "usage: node examples/demo.ts [--fast] [--seed=N] [--report=path]"
const parseArgs = (args: ReadonlyArray<string>) => {
  let fast = false
  let seed = 1
  let report = resolve(root, ".cache", "storm-report.html")
  for (const arg of args) {
    if (arg === "--fast") fast = true
    else if (arg.startsWith("--seed=") && /^\d{1,9}$/.test(arg.slice(7))) seed = Number(arg.slice(7))
    else if (arg.startsWith("--report=") && arg.length > 9) report = resolve(process.cwd(), arg.slice(9))
    else return undefined
  }
  return { fast, seed, report }
}

const secondsOf = (ms: number) => `${Number((ms / 1000).toFixed(2))} s`

const header = (settings: Settings): Array<string> => {
  const p = settings.pipeline
  const b = settings.bulkhead
  return [
    `Bulwark demo: a storm on the pricing service, the same traffic three ways (seed ${settings.seed}${settings.fast ? ", --fast" : ""})`,
    "",
    `  traffic      ${settings.requestsPerSecond} requests/s on average (seeded Poisson arrivals) for ${secondsOf(settings.trafficMs)}; ` +
    `clients give up after ${settings.clientTimeoutMs} ms`,
    `  dependency   ${settings.dependency.capacity} workers; past that, each new call slows down more than in proportion`,
    ...settings.phases.map((phase) =>
      `    ${`${secondsOf(phase.startMs)} to ${secondsOf(phase.endMs)}`.padEnd(16)}${phase.name.padEnd(15)}${phase.description}`
    ),
    `  variants     unprotected     the client's timeout only`,
    `               bulkhead only   Bulkhead.make({ maxConcurrent: ${b.maxConcurrent}, maxQueue: ${b.maxQueue}, queueTimeout: ${b.queueTimeoutMs} })`,
    `               full pipeline   fallback to the last good price > timeout ${p.overallTimeoutMs} ms > bulkhead ` +
    `${p.bulkhead.maxConcurrent}+${p.bulkhead.maxQueue} > retry x${p.retry.maxAttempts}`,
    `                               > circuit breaker (open ${p.breaker.openForMs} ms) > attempt timeout ${p.attemptTimeoutMs} ms > call`,
    ""
  ]
}

/** On a terminal one line rewritten in place; otherwise a plain line at each phase and at the end. */
const progressPrinter = (settings: Settings) => {
  const tty = process.stdout.isTTY === true
  let lastPhase = ""
  let lastWrite = 0
  return (p: Progress) => {
    const m = p.recorder
    const line = `  ${variantLabels[p.variant].padEnd(13)} ${(p.atMs / 1000).toFixed(1).padStart(4)} s ${(p.done ? "done" : p.phase.name).padEnd(13)}` +
      ` sent ${String(m.sent).padStart(5)}  ok ${String(m.ok).padStart(5)}  cached ${String(m.fallbacks).padStart(4)}` +
      `  errors ${String(m.answered - m.ok - m.fallbacks).padStart(4)}  in flight ${String(m.inFlight).padStart(3)}` +
      (p.breaker === undefined ? "" : `  breaker ${p.breaker}`)
    if (tty) {
      const now = performance.now()
      if (p.done || now - lastWrite >= 50) {
        lastWrite = now
        // One screen line, so that \r can rewrite it.
        process.stdout.write(`\r\x1b[K${line.slice(0, (process.stdout.columns || 120) - 1)}${p.done ? "\n" : ""}`)
      }
      return
    }
    const key = `${p.variant}/${phaseAt(settings, p.atMs).name}`
    if (p.done || (key !== lastPhase && p.atMs < settings.trafficMs)) {
      lastPhase = key
      process.stdout.write(`${line}\n`)
    }
  }
}

const main = async () => {
  const args = parseArgs(process.argv.slice(2))
  if (args === undefined) {
    console.error(usage)
    return 2
  }
  const started = performance.now()
  const settings = makeSettings({ seed: args.seed, fast: args.fast })
  for (const line of header(settings)) console.log(line)

  const results = await Effect.runPromise(runStorm(settings, progressPrinter(settings)))

  console.log("")
  for (const line of formatTable(settings, results)) console.log(line)
  console.log("")
  const outcome = checks(settings, results)
  for (const check of outcome) console.log(`  ${check.ok ? "ok  " : "FAIL"}  ${check.text}`)

  mkdirSync(dirname(args.report), { recursive: true })
  writeFileSync(args.report, renderReport(settings, results))
  const shown = relative(process.cwd(), args.report)
  console.log(`\n  Report: ${shown.startsWith("..") ? args.report : shown} (open it in a browser)`)

  const passed = outcome.every((check) => check.ok)
  const simulated = results.map((r) => `${r.label} ${secondsOf(r.wallMs)}`).join(", ")
  console.log(
    `\n${passed ? "The protection helped" : "The numbers do not show the protection helping"} ` +
      `(${secondsOf(performance.now() - started)}; simulation: ${simulated}).`
  )
  return passed ? 0 : 1
}

// `npm run demo | head` closes the pipe early: stop quietly.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error
  process.exit()
})

main().then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    console.error(error)
    process.exitCode = 2
  }
)
