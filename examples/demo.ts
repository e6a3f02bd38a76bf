/**
 * Bulwark demo: one slow dependency, the same traffic, with and without a bulkhead.
 *
 *   npm run demo              about 7 s after the build
 *   npm run demo -- --fast    about 2.5 s (the CI smoke run)
 *
 * A small shop serves GET /catalog (a 5 ms lookup) and POST /checkout (a 20 ms
 * call to a payments API). Every request runs in a database transaction, so it
 * holds one of 16 pooled connections from start to end, and checkout calls
 * payments inside its transaction. Halfway through the run, payments turns
 * slow: 2 s per call. Clients give up when they get no answer in time, and the
 * server then interrupts their request.
 *
 * Unprotected, checkouts pile up on payments, each holding a connection, until
 * the pool is empty; catalog requests, which never touch payments, queue
 * behind them and time out. With a bulkhead on payments (4 calls at once, 4
 * waiting, 100 ms wait limit), payments can tie up at most 8 connections:
 * surplus checkouts get a fast 503 and the catalog stays fast.
 *
 * Real time (Effect's live clock), deterministic traffic (a fixed arrival
 * schedule, every fifth request a checkout). Exits with status 1 when the
 * numbers do not show the bulkhead helping, so CI can use it as a smoke test.
 */
import { Bulkhead } from "@bulwark/core"
import { Clock, Effect, Fiber, Semaphore } from "effect"

const fast = process.argv.includes("--fast")

const settings = {
  requestsPerSecond: 500,
  /** How long traffic is sent, in milliseconds. */
  trafficMs: fast ? 800 : 2500,
  /** When payments turns slow: halfway. */
  incidentAtMs: fast ? 400 : 1250,
  /**
   * Clients abandon a request after this long, and the server interrupts it
   * (as an Effect HTTP server does when the client goes away). Shoppers
   * browsing the catalog are less patient than shoppers paying.
   */
  timeoutMs: { catalog: fast ? 150 : 250, checkout: fast ? 400 : 1000 },
  connections: 16,
  catalogMs: 5,
  paymentsMs: 20,
  paymentsSlowMs: 2000,
  /** State each live request keeps (parsed body, buffers). */
  requestBytes: 64 * 1024,
  bulkhead: { name: "payments", maxConcurrent: 4, maxQueue: 4, queueTimeout: "100 millis" }
} as const

type Endpoint = "catalog" | "checkout"
const totalRequests = Math.round(settings.requestsPerSecond * settings.trafficMs / 1000)
const endpointOf = (i: number): Endpoint => i % 5 === 4 ? "checkout" : "catalog"
const sentTo = (endpoint: Endpoint) => Array.from({ length: totalRequests }, (_, i) => endpointOf(i)).filter((e) => e === endpoint).length

/** A level that remembers its highest value. */
class Level {
  current = 0
  peak = 0
  add(n: number): void {
    this.current += n
    if (this.current > this.peak) this.peak = this.current
  }
}

/** What one run measured. */
class Measurements {
  sent = 0
  readonly served = { catalog: 0, checkout: 0 }
  readonly timedOut = { catalog: 0, checkout: 0 }
  /** Checkouts answered 503 because the bulkhead refused the payments call. */
  refused = 0
  /** GET /catalog latencies; a request that timed out counts as its timeout. */
  readonly catalogLatency = { healthy: [] as Array<number>, incident: [] as Array<number> }
  readonly liveRequests = new Level()
  readonly requestMemory = new Level()
  readonly onPayments = new Level()
  readonly waitingForConnection = new Level()
  bulkhead: Bulkhead.Snapshot | undefined = undefined
  findings: ReadonlyArray<string> = []
  get servedTotal(): number {
    return this.served.catalog + this.served.checkout
  }
}

const progress = (line: string, done: boolean) =>
  Effect.sync(() => {
    if (process.stdout.isTTY) process.stdout.write(`\r\x1b[K${line}${done ? "\n" : ""}`)
    else process.stdout.write(`${line}\n`)
  })

/** Sends the whole traffic to a fresh service, with or without a bulkhead on payments. */
const run = (label: string, protect: boolean) =>
  Effect.gen(function*() {
    const measured = new Measurements()
    const clock = yield* Clock.Clock
    const origin = clock.monotonicTimeNanosUnsafe()
    const elapsedMs = () => Number(clock.monotonicTimeNanosUnsafe() - origin) / 1e6
    const incident = () => elapsedMs() >= settings.incidentAtMs

    // The dependencies.
    const catalogLookup = Effect.sleep(settings.catalogMs)
    const chargeCard = Effect.suspend(() => {
      measured.onPayments.add(1)
      return Effect.sleep(incident() ? settings.paymentsSlowMs : settings.paymentsMs).pipe(
        Effect.ensuring(Effect.sync(() => measured.onPayments.add(-1)))
      )
    })

    // The service: a request holds a pooled connection from start to end.
    const pool = yield* Semaphore.make(settings.connections)
    const inTransaction = <A, E>(handler: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.suspend(() => {
        let waiting = true
        measured.waitingForConnection.add(1)
        const connected = Effect.sync(() => {
          waiting = false
          measured.waitingForConnection.add(-1)
        })
        return pool.withPermit(Effect.andThen(connected, handler)).pipe(
          Effect.onInterrupt(() => Effect.sync(() => waiting && measured.waitingForConnection.add(-1)))
        )
      })

    const payments = protect ? yield* Bulkhead.make(settings.bulkhead) : undefined
    const charge = payments === undefined ? chargeCard : chargeCard.pipe(Bulkhead.guard(payments))
    const handlers = {
      catalog: inTransaction(Effect.as(catalogLookup, 200 as const)),
      checkout: inTransaction(charge.pipe(
        Effect.as(200 as const),
        // A rejection is an answer too: "busy, try again", in microseconds instead of seconds.
        Effect.catchTag("BulkheadFull", () => Effect.succeed(503 as const))
      ))
    }

    // One client request.
    const request = (endpoint: Endpoint) =>
      Effect.suspend(() => {
        const arrivedAt = elapsedMs()
        const phase = arrivedAt < settings.incidentAtMs ? "healthy" : "incident"
        const state = new Uint8Array(settings.requestBytes)
        measured.liveRequests.add(1)
        measured.requestMemory.add(state.byteLength)
        return handlers[endpoint].pipe(
          Effect.timeoutOption(settings.timeoutMs[endpoint]),
          Effect.map((answer) => {
            if (answer._tag === "None") measured.timedOut[endpoint]++
            else if (answer.value === 503) measured.refused++
            else measured.served[endpoint]++
            if (endpoint === "catalog") {
              measured.catalogLatency[phase].push(answer._tag === "None" ? settings.timeoutMs.catalog : elapsedMs() - arrivedAt)
            }
          }),
          Effect.ensuring(Effect.sync(() => {
            measured.liveRequests.add(-1)
            measured.requestMemory.add(-state.byteLength)
          }))
        )
      })

    // A progress line while the traffic runs.
    const status = () =>
      `  ${label.padEnd(13)}  t=${(elapsedMs() / 1000).toFixed(1)}s  sent ${String(measured.sent).padStart(4)}/${totalRequests}` +
      `  served ${String(measured.servedTotal).padStart(4)}  live ${String(measured.liveRequests.current).padStart(3)}` +
      `  on payments ${String(measured.onPayments.current).padStart(2)}${incident() ? "  (payments is slow)" : ""}`
    const reporter = yield* Effect.forkChild(
      Effect.forever(Effect.andThen(Effect.sleep(process.stdout.isTTY ? 100 : 500), Effect.suspend(() => progress(status(), false))))
    )

    // The load generator: a fixed arrival schedule, each request on its own fiber.
    const intervalMs = 1000 / settings.requestsPerSecond
    const clients: Array<Fiber.Fiber<void>> = []
    for (let i = 0; i < totalRequests; i++) {
      const wait = i * intervalMs - elapsedMs()
      if (wait > 0) yield* Effect.sleep(wait)
      clients.push(yield* Effect.forkChild(request(endpointOf(i))))
      measured.sent++
    }
    yield* Fiber.awaitAll(clients)
    yield* Fiber.interrupt(reporter)
    yield* progress(status(), true)

    if (payments !== undefined) {
      measured.bulkhead = yield* Bulkhead.stats(payments)
      measured.findings = (yield* Bulkhead.capacityReport(payments)).findings.map((f) => f.message)
    }
    return measured
  }).pipe(Effect.scoped) // closing the scope closes the bulkhead and drains it

// The report.

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}
const catalogMs = (value: number) =>
  value >= settings.timeoutMs.catalog ? `timeout` : `${Math.round(value)} ms`
const p50p99 = (values: ReadonlyArray<number>) => `${catalogMs(percentile(values, 50))} / ${catalogMs(percentile(values, 99))}`
const megabytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`

const table = (off: Measurements, on: Measurements): Array<string> => {
  const rows: Array<readonly [string, string, string]> = []
  const row = (label: string, f: (m: Measurements) => string | number) => rows.push([label, String(f(off)), String(f(on))])
  row("requests served (200)", (m) => `${m.servedTotal} / ${m.sent}`)
  row("  GET /catalog", (m) => `${m.served.catalog} / ${sentTo("catalog")}`)
  row("  POST /checkout", (m) => `${m.served.checkout} / ${sentTo("checkout")}`)
  row("client timeouts: catalog / checkout", (m) => `${m.timedOut.catalog} / ${m.timedOut.checkout}`)
  row("checkouts refused at once (503)", (m) => m.refused)
  for (const reason of ["QueueFull", "QueueTimeout", "Closed", "Oversized"] as const) {
    row(`  BulkheadFull reason ${reason}`, (m) => m.bulkhead?.rejected[reason] ?? "-")
  }
  row("GET /catalog p50 / p99, healthy", (m) => p50p99(m.catalogLatency.healthy))
  row("GET /catalog p50 / p99, payments slow", (m) => p50p99(m.catalogLatency.incident))
  row("calls stuck on payments (peak)", (m) => m.onPayments.peak)
  row("requests waiting for a connection (peak)", (m) => m.waitingForConnection.peak)
  row("live request fibers (peak)", (m) => m.liveRequests.peak)
  row(`request memory held (peak, ${settings.requestBytes / 1024} KB each)`, (m) => megabytes(m.requestMemory.peak))

  const first = Math.max(...rows.map((r) => r[0].length)) + 2
  const other = Math.max("with bulkhead".length, ...rows.flatMap((r) => [r[1].length, r[2].length])) + 3
  const line = (a: string, b: string, c: string) => `  ${a.padEnd(first)}${b.padStart(other)}${c.padStart(other)}`
  return [
    line("", "unprotected", "with bulkhead"),
    line("", "-".repeat(other - 3), "-".repeat(other - 3)),
    ...rows.map(([a, b, c]) => line(a, b, c))
  ]
}

/**
 * What the run must show. The thresholds leave room for a busy machine (a CI
 * runner starved of CPU slows both runs alike) but not for a bulkhead that
 * does not help.
 */
const checks = (off: Measurements, on: Measurements) => {
  const p99 = (m: Measurements) => percentile(m.catalogLatency.incident, 99)
  return [
    {
      ok: p99(on) < settings.timeoutMs.catalog && p99(on) < p99(off) && on.timedOut.catalog * 10 <= off.timedOut.catalog,
      text: `GET /catalog while payments is slow: p99 ${catalogMs(p99(on))} and ${on.timedOut.catalog} timeouts with the bulkhead, ` +
        `p99 ${catalogMs(p99(off))} and ${off.timedOut.catalog} timeouts without`
    },
    {
      ok: on.servedTotal > off.servedTotal,
      text: `requests served: ${on.servedTotal} with the bulkhead, ${off.servedTotal} without`
    },
    {
      ok: on.onPayments.peak <= settings.bulkhead.maxConcurrent && on.onPayments.peak < off.onPayments.peak,
      text: `calls stuck on payments: at most ${on.onPayments.peak} (maxConcurrent ${settings.bulkhead.maxConcurrent}), ` +
        `${off.onPayments.peak} without`
    },
    {
      ok: on.liveRequests.peak < off.liveRequests.peak,
      text: `live request fibers: at most ${on.liveRequests.peak} with the bulkhead, ${off.liveRequests.peak} without`
    }
  ]
}

const main = Effect.gen(function*() {
  const started = Date.now()
  const { bulkhead, timeoutMs } = settings
  const say = (line: string) => Effect.sync(() => console.log(line))
  yield* say(`Bulwark demo: a slow dependency, with and without a bulkhead${fast ? " (--fast)" : ""}\n`)
  yield* say(
    `  traffic    ${settings.requestsPerSecond} requests/s for ${settings.trafficMs / 1000} s, ${totalRequests} in all: ` +
      `4 GET /catalog to 1 POST /checkout, on a fixed schedule`
  )
  yield* say(
    `  service    each request holds 1 of ${settings.connections} DB connections; checkout calls payments inside its transaction`
  )
  yield* say(
    `  incident   at t=${settings.incidentAtMs / 1000} s payments goes from ${settings.paymentsMs} ms to ` +
      `${settings.paymentsSlowMs / 1000} s per call`
  )
  yield* say(`  clients    give up after ${timeoutMs.catalog} ms (catalog) and ${timeoutMs.checkout} ms (checkout)`)
  yield* say(
    `  bulkhead   Bulkhead.make({ name: "${bulkhead.name}", maxConcurrent: ${bulkhead.maxConcurrent}, ` +
      `maxQueue: ${bulkhead.maxQueue}, queueTimeout: "${bulkhead.queueTimeout}" })\n`
  )
  const off = yield* run("unprotected", false)
  const on = yield* run("with bulkhead", true)
  yield* say("")
  for (const line of table(off, on)) yield* say(line)
  if (on.findings.length > 0) {
    yield* say("\n  Bulkhead.capacityReport(payments) after the run:")
    for (const finding of on.findings) yield* say(`    - ${finding}`)
  }
  yield* say("")
  const results = checks(off, on)
  for (const check of results) yield* say(`  ${check.ok ? "ok  " : "FAIL"}  ${check.text}`)
  const passed = results.every((check) => check.ok)
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  yield* say(`\n${passed ? "The bulkhead kept the service up" : "The numbers do not show the bulkhead helping"} (${seconds} s).`)
  return passed
})

Effect.runPromise(main).then(
  (passed) => {
    process.exitCode = passed ? 0 : 1
  },
  (error: unknown) => {
    console.error(error)
    process.exitCode = 2
  }
)
