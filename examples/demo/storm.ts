/**
 * The storm: a simulated dependency that degrades in phases, a seeded load
 * generator, and the same traffic sent three ways (unprotected, bulkhead
 * only, full pipeline). Used by examples/demo.ts (the command line) and by
 * test/demo/report.test.ts.
 *
 * Virtual time. Each variant runs under Effect's `TestClock`: every sleep,
 * timeout, backoff, queue wait and open circuit moves on a clock that the
 * driver advances step by step, so 50 s of traffic take a second or two of
 * wall time, and the numbers depend only on the seed. Randomness (arrivals,
 * latencies, injected faults, retry jitter) comes from Effect's `Random`
 * under `Random.withSeed`, and fibers woken by the clock run in a fixed
 * order, so the same seed gives the same table and the same report on every
 * machine, however busy. (On the live clock the numbers would move with the
 * machine's load, and 50 s of traffic would take 50 s.)
 */
import { Bulkhead, Chaos, CircuitBreaker, Policy, Retry, Timeout } from "@bulwark/core"
import { Clock, Data, Effect, Exit, Fiber, Random, Stream } from "effect"
import { TestClock } from "effect/testing"

// -----------------------------------------------------------------------------
// settings
// -----------------------------------------------------------------------------

export type PhaseName = "healthy" | "latency spike" | "outage" | "recovery"
export const phaseNames: ReadonlyArray<PhaseName> = ["healthy", "latency spike", "outage", "recovery"]

export interface Phase {
  readonly name: PhaseName
  readonly startMs: number
  readonly endMs: number
  /** One line for the header and the report. */
  readonly description: string
}

/** How the dependency answers in a phase. */
export interface Behaviour {
  /** Median service time of a call when the dependency is not overloaded. */
  readonly medianMs: number
  /** Log-normal spread (sigma): p99 is about median * e^(2.33 * spread). */
  readonly spread: number
  /** Share of calls that answer 503 (Unavailable) instead of a price. */
  readonly errorRate: number
}

export interface Settings {
  readonly seed: number
  readonly fast: boolean
  /** Mean arrival rate; arrivals are a seeded Poisson process. */
  readonly requestsPerSecond: number
  readonly phases: ReadonlyArray<Phase>
  /** How long traffic is sent: the end of the last phase. */
  readonly trafficMs: number
  /** Width of one time bucket of the report's charts. */
  readonly bucketMs: number
  /** How often the driver advances the virtual clock (and reports progress). */
  readonly stepMs: number
  /** The client gives up after this long, in every variant. */
  readonly clientTimeoutMs: number
  readonly dependency: {
    /** Workers: past this many calls in flight, every new call is slowed down. */
    readonly capacity: number
    /**
     * How badly the dependency thrashes when overloaded: a call started with
     * `inFlight` calls open takes `(inFlight / capacity) ^ thrashing` times
     * its service time (when that is above 1). 1 would be fair sharing of the
     * workers; above 1, context switches, lock contention and GC make the
     * dependency slower as a whole, the mechanism of congestion collapse.
     */
    readonly thrashing: number
    readonly healthy: Behaviour
    readonly spike: Behaviour
    readonly outage: {
      /** Share of calls refused at once with a 503 (after `fastFailMs`). */
      readonly fastFailRate: number
      readonly fastFailMs: number
      /** The others hang this long, then the connection is reset. */
      readonly hangMs: number
    }
    /** Recovery: healthy behaviour, but service times start `warmup` times longer (cold caches) and fall back. */
    readonly recovery: Behaviour & { readonly warmup: number }
  }
  readonly bulkhead: { readonly maxConcurrent: number; readonly maxQueue: number; readonly queueTimeoutMs: number }
  readonly pipeline: PipelineSettings
}

export interface PipelineSettings {
  /** Overall time limit of one request, retries included; below the client's, so a fallback arrives in time. */
  readonly overallTimeoutMs: number
  readonly bulkhead: { readonly maxConcurrent: number; readonly maxQueue: number; readonly queueTimeoutMs: number }
  readonly retry: { readonly maxAttempts: number; readonly baseMs: number; readonly maxMs: number; readonly maxElapsedMs: number }
  readonly breaker: {
    readonly consecutive: number
    readonly failureRate: number
    readonly minimumCalls: number
    readonly windowMs: number
    readonly openForMs: number
    readonly successesToClose: number
  }
  readonly attemptTimeoutMs: number
}

/** The demo's settings: `fast` is the CI smoke run (shorter phases, same rates). */
export const makeSettings = (options: { readonly seed: number; readonly fast: boolean }): Settings => {
  const dependency: Settings["dependency"] = {
    capacity: 32,
    thrashing: 1.5,
    healthy: { medianMs: 20, spread: 0.5, errorRate: 0.01 },
    spike: { medianMs: 180, spread: 0.6, errorRate: 0.03 },
    outage: { fastFailRate: 0.3, fastFailMs: 30, hangMs: 5000 },
    recovery: { medianMs: 25, spread: 0.5, errorRate: 0.03, warmup: 3 }
  }
  const { healthy, spike, outage, recovery } = dependency
  const percent = (rate: number) => `${Math.round(rate * 100)}%`
  const descriptions: Record<PhaseName, string> = {
    healthy: `${healthy.medianMs} ms median, ${percent(healthy.errorRate)} errors`,
    "latency spike": `${spike.medianMs} ms median, ${percent(spike.errorRate)} errors: ` +
      `more work than its ${dependency.capacity} workers can take at this rate`,
    outage: `${percent(outage.fastFailRate)} refused at once (503), the rest hang ${outage.hangMs / 1000} s, ` +
      `then the connection resets`,
    recovery: `back to ${recovery.medianMs} ms median and ${percent(recovery.errorRate)} errors, ` +
      `starting ${recovery.warmup}x slower while caches warm up`
  }
  const lengths = options.fast ? [5000, 5000, 6000, 6000] : [10_000, 10_000, 15_000, 15_000]
  let start = 0
  const phases = phaseNames.map((name, i) => {
    const phase = { name, startMs: start, endMs: start + lengths[i], description: descriptions[name] }
    start = phase.endMs
    return phase
  })
  return {
    seed: options.seed,
    fast: options.fast,
    requestsPerSecond: 200,
    phases,
    trafficMs: start,
    bucketMs: options.fast ? 100 : 250,
    stepMs: options.fast ? 100 : 250,
    clientTimeoutMs: 1000,
    dependency,
    bulkhead: { maxConcurrent: 32, maxQueue: 16, queueTimeoutMs: 100 },
    pipeline: {
      overallTimeoutMs: 800,
      bulkhead: { maxConcurrent: 32, maxQueue: 16, queueTimeoutMs: 100 },
      retry: { maxAttempts: 3, baseMs: 50, maxMs: 400, maxElapsedMs: 600 },
      breaker: {
        consecutive: 8,
        failureRate: 0.5,
        minimumCalls: 20,
        windowMs: 2000,
        openForMs: 1000,
        successesToClose: 3
      },
      attemptTimeoutMs: 400
    }
  }
}

export const phaseAt = (settings: Settings, atMs: number): Phase =>
  settings.phases.find((phase) => atMs < phase.endMs) ?? settings.phases[settings.phases.length - 1]

// -----------------------------------------------------------------------------
// the dependency
// -----------------------------------------------------------------------------

/** The dependency answered 503. */
export class Unavailable extends Data.TaggedError("Unavailable")<{}> {}

/** The dependency hung, then dropped the connection. */
export class ConnectionReset extends Data.TaggedError("ConnectionReset")<{}> {}

export type DependencyError = Unavailable | ConnectionReset

/** A price from the pricing service, or one served from the cache by a fallback. */
export interface Quote {
  readonly price: number
  /** The error that made the pipeline fall back to the cache; absent for a fresh answer. */
  readonly fallbackFor?: string | undefined
}

/** A standard normal draw from Effect's `Random` (Box-Muller). */
const normal = Effect.map(Effect.all([Random.next, Random.next]), ([u1, u2]) =>
  Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2))

/**
 * The pricing service. Service times are log-normal around the phase's
 * median; past `capacity` calls in flight, a new call is slowed down more
 * than in proportion (see `thrashing`). Errors are injected with
 * `Chaos.fault` at the phase's rate, after the service time (the dependency
 * did the work, then failed). A call the client abandons is cancelled: its
 * work stops and it leaves the in-flight count.
 */
const makeDependency = (settings: Settings, recorder: Recorder): Effect.Effect<Quote, DependencyError> => {
  const d = settings.dependency
  const unavailable = () => new Unavailable()
  const answer = Effect.map(Random.next, (u) => ({ price: Math.round(9000 + 2000 * u) / 100 }))
  const faulty = (rate: number, name: string) => Chaos.fault(answer, { name, rate, error: unavailable })
  const answers = {
    healthy: faulty(d.healthy.errorRate, "pricing: healthy"),
    "latency spike": faulty(d.spike.errorRate, "pricing: latency spike"),
    recovery: faulty(d.recovery.errorRate, "pricing: recovery")
  }
  // The outage: a share of calls is refused at once, the others hang, then fail.
  const outage = Effect.sleep(d.outage.hangMs).pipe(
    Effect.andThen(Effect.fail(new ConnectionReset())),
    Chaos.fault({ name: "pricing: outage, refused", rate: d.outage.fastFailRate, error: unavailable })
  )
  const outageCall = Effect.andThen(Effect.sleep(d.outage.fastFailMs), outage)

  return Effect.suspend(() => {
    const startedAt = recorder.now()
    const phase = phaseAt(settings, startedAt)
    const name = phase.name
    recorder.callStarted(startedAt, name)
    // Past capacity, the dependency thrashes: a call's service time grows faster than the load.
    const slowdown = Math.max(1, recorder.inFlight / d.capacity) ** d.thrashing
    let work: Effect.Effect<Quote, DependencyError>
    if (name === "outage") {
      work = outageCall
    } else {
      const behaviour = name === "healthy" ? d.healthy : name === "latency spike" ? d.spike : d.recovery
      const warmup = name === "recovery"
        ? 1 + (d.recovery.warmup - 1) * Math.max(0, 1 - (startedAt - phase.startMs) / (phase.endMs - phase.startMs))
        : 1
      const reply = answers[name]
      work = Effect.flatMap(normal, (z) =>
        Effect.andThen(Effect.sleep(behaviour.medianMs * Math.exp(behaviour.spread * z) * warmup * slowdown), reply))
    }
    return Effect.onExit(work, (exit) => Effect.sync(() => recorder.callEnded(startedAt, name, Exit.isSuccess(exit))))
  })
}

// -----------------------------------------------------------------------------
// the variants
// -----------------------------------------------------------------------------

export type VariantName = "unprotected" | "bulkhead" | "pipeline"
export const variantNames: ReadonlyArray<VariantName> = ["unprotected", "bulkhead", "pipeline"]
export const variantLabels: Record<VariantName, string> = {
  unprotected: "unprotected",
  bulkhead: "bulkhead only",
  pipeline: "full pipeline"
}

/** The last fresh price, served by the full pipeline's fallback. */
class Cache {
  last: Quote = { price: 100 }
}

/**
 * The full pipeline: one `Policy`, outermost first: fallback to the cached
 * price, overall timeout, bulkhead, retry with backoff, circuit breaker,
 * per-attempt timeout, the call. (No rate limiter: the load is the clients',
 * and shedding it is the bulkhead's job here.) `warnings: "fail"`: the demo
 * must not run a pipeline known to misbehave.
 */
export const fullPipeline = (options: PipelineSettings, cache: { readonly last: Quote }) =>
  Effect.gen(function*() {
    const bulkhead = yield* Bulkhead.make({
      name: "pricing",
      maxConcurrent: options.bulkhead.maxConcurrent,
      maxQueue: options.bulkhead.maxQueue,
      queueTimeout: options.bulkhead.queueTimeoutMs
    })
    const breaker = yield* CircuitBreaker.make({
      name: "pricing",
      trip: [
        CircuitBreaker.consecutive(options.breaker.consecutive),
        CircuitBreaker.failureRate({
          threshold: options.breaker.failureRate,
          minimumCalls: options.breaker.minimumCalls,
          window: `${options.breaker.windowMs} millis`
        })
      ],
      openFor: options.breaker.openForMs,
      halfOpen: { probes: 1, successesToClose: options.breaker.successesToClose, probeTimeout: options.attemptTimeoutMs * 2 }
    })
    const policy = yield* Policy.make({
      name: "pricing",
      timeout: options.overallTimeoutMs,
      bulkhead,
      retry: Retry.policy({
        maxAttempts: options.retry.maxAttempts,
        base: options.retry.baseMs,
        max: options.retry.maxMs,
        jitter: "full",
        maxElapsed: options.retry.maxElapsedMs,
        // By default a retry waits out a short CircuitOpen.retryAfter (a
        // half-open circuit whose probe slot is busy says "now"); here an
        // open circuit is an answer: the fallback serves it at once.
        while: (error) => (error as { readonly _tag?: unknown })._tag !== "CircuitOpen"
      }),
      circuitBreaker: breaker,
      attemptTimeout: options.attemptTimeoutMs,
      fallback: (error) => Effect.succeed({ price: cache.last.price, fallbackFor: (error as { readonly _tag: string })._tag }),
      warnings: "fail"
    })
    const guard = (call: Effect.Effect<Quote, DependencyError>): Effect.Effect<Quote> => call.pipe(Policy.guard(policy))
    return { guard, bulkhead, breaker, retry: policy.components.retry!, policy }
  })

// -----------------------------------------------------------------------------
// measurements
// -----------------------------------------------------------------------------

const zeros = (n: number) => Array.from({ length: n }, () => 0)

/** What one variant measured; plain data, filled in while the traffic runs. */
export class Recorder {
  readonly settings: Settings
  readonly buckets: number
  now: () => number = () => 0

  // requests, as the client sees them
  sent = 0
  answered = 0
  ok = 0
  fallbacks = 0
  readonly errors: Record<string, number> = {}
  readonly fallbackCauses: Record<string, number> = {}
  /** Fresh answers, by the phase the request arrived in. */
  readonly okByPhase: Record<PhaseName, number> = { healthy: 0, "latency spike": 0, outage: 0, recovery: 0 }
  readonly latencies: Array<number> = []
  readonly latenciesByPhase: Record<PhaseName, Array<number>> = {
    healthy: [],
    "latency spike": [],
    outage: [],
    recovery: []
  }

  // calls, as the dependency sees them
  inFlight = 0
  peakInFlight = 0
  calls = 0
  readonly callsByPhase: Record<PhaseName, number> = { healthy: 0, "latency spike": 0, outage: 0, recovery: 0 }
  /** Milliseconds of dependency time spent in calls that did not return a price. */
  failedCallMs = 0
  readonly failedCallMsByPhase: Record<PhaseName, number> = { healthy: 0, "latency spike": 0, outage: 0, recovery: 0 }

  // over time, one entry per bucket
  readonly inFlightPeak: Array<number>
  readonly okPerBucket: Array<number>
  readonly fallbackPerBucket: Array<number>
  readonly latencyPerBucket: Array<Array<number>>
  /** Error tag -> count per bucket: errors returned to the client, and the errors behind fallbacks. */
  readonly failuresPerBucket: Map<string, Array<number>> = new Map()
  readonly breakerTransitions: Array<{ readonly atMs: number; readonly to: CircuitBreaker.State }> = []

  constructor(settings: Settings) {
    this.settings = settings
    // Requests arriving at the end finish within the client timeout.
    this.buckets = Math.ceil((settings.trafficMs + settings.clientTimeoutMs) / settings.bucketMs)
    this.inFlightPeak = zeros(this.buckets)
    this.okPerBucket = zeros(this.buckets)
    this.fallbackPerBucket = zeros(this.buckets)
    this.latencyPerBucket = Array.from({ length: this.buckets }, () => [])
  }

  bucketOf(atMs: number): number {
    return Math.min(this.buckets - 1, Math.max(0, Math.floor(atMs / this.settings.bucketMs)))
  }

  private lastBucket = 0

  /**
   * Brings the per-bucket peaks up to `atMs`: calls still in flight count in
   * every bucket they span, even one in which no call started or ended.
   */
  touch(atMs: number): void {
    const b = this.bucketOf(atMs)
    for (let k = this.lastBucket + 1; k <= b; k++) this.inFlightPeak[k] = Math.max(this.inFlightPeak[k], this.inFlight)
    if (b > this.lastBucket) this.lastBucket = b
  }

  callStarted(atMs: number, phase: PhaseName): void {
    this.touch(atMs)
    this.calls++
    this.callsByPhase[phase]++
    this.inFlight++
    if (this.inFlight > this.peakInFlight) this.peakInFlight = this.inFlight
    const b = this.bucketOf(atMs)
    if (this.inFlight > this.inFlightPeak[b]) this.inFlightPeak[b] = this.inFlight
  }

  callEnded(startedAt: number, phase: PhaseName, succeeded: boolean): void {
    const now = this.now()
    this.touch(now)
    this.inFlight--
    if (!succeeded) {
      const spent = now - startedAt
      this.failedCallMs += spent
      this.failedCallMsByPhase[phase] += spent
    }
  }

  private countFailure(tag: string, b: number): void {
    let series = this.failuresPerBucket.get(tag)
    if (series === undefined) {
      series = zeros(this.buckets)
      this.failuresPerBucket.set(tag, series)
    }
    series[b]++
  }

  answeredWith(arrivedAt: number, exit: Exit.Exit<Quote, { readonly _tag: string }>): void {
    const at = this.now()
    const latency = at - arrivedAt
    const b = this.bucketOf(at)
    const phase = phaseAt(this.settings, arrivedAt).name
    this.answered++
    this.latencies.push(latency)
    this.latenciesByPhase[phase].push(latency)
    this.latencyPerBucket[b].push(latency)
    if (Exit.isSuccess(exit)) {
      const cause = exit.value.fallbackFor
      if (cause === undefined) {
        this.ok++
        this.okByPhase[phase]++
        this.okPerBucket[b]++
      } else {
        this.fallbacks++
        this.fallbackPerBucket[b]++
        this.fallbackCauses[cause] = (this.fallbackCauses[cause] ?? 0) + 1
        this.countFailure(cause, b)
      }
    } else {
      const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
      const tag = error === undefined ? "Defect" : error.error._tag
      this.errors[tag] = (this.errors[tag] ?? 0) + 1
      this.countFailure(tag, b)
    }
  }
}

/** What the demo reports for one variant. */
export interface VariantResult {
  readonly variant: VariantName
  readonly label: string
  readonly recorder: Recorder
  /** Counters of the guards, where the variant has them. */
  readonly bulkhead: Bulkhead.Snapshot | undefined
  readonly breaker: CircuitBreaker.Snapshot | undefined
  readonly retry: Retry.Snapshot | undefined
  /** Wall-clock time the variant took to simulate. */
  readonly wallMs: number
}

export interface Progress {
  readonly variant: VariantName
  readonly atMs: number
  readonly phase: Phase
  readonly recorder: Recorder
  readonly breaker: CircuitBreaker.State | undefined
  readonly done: boolean
}

// -----------------------------------------------------------------------------
// traffic
// -----------------------------------------------------------------------------

/**
 * Arrival times (ms from the start) of a Poisson process at the settings'
 * rate, drawn from `Random` under the seed: the same traffic for every
 * variant.
 */
export const arrivals = (settings: Settings): Effect.Effect<ReadonlyArray<number>> =>
  Effect.gen(function*() {
    const times: Array<number> = []
    const meanGapMs = 1000 / settings.requestsPerSecond
    let at = 0
    for (;;) {
      at += -Math.log(1 - (yield* Random.next)) * meanGapMs
      if (at >= settings.trafficMs) return times
      // Whole microseconds, so that the schedule prints and compares exactly.
      times.push(Math.round(at * 1000) / 1000)
    }
  }).pipe(Random.withSeed(`storm-${settings.seed}-arrivals`))

/** Sends the traffic through one variant, on a virtual clock; see the header. */
export const runVariant = (
  settings: Settings,
  variant: VariantName,
  schedule: ReadonlyArray<number>,
  onProgress: (progress: Progress) => void = () => {}
): Effect.Effect<VariantResult> =>
  Effect.gen(function*() {
    const wallStart = performance.now()
    const recorder = new Recorder(settings)
    const clock = yield* Clock.Clock
    const origin = clock.currentTimeMillisUnsafe()
    recorder.now = () => clock.currentTimeMillisUnsafe() - origin

    const dependency = makeDependency(settings, recorder)
    const cache = new Cache()
    const remember = Effect.tap(dependency, (quote) =>
      Effect.sync(() => {
        cache.last = quote
      }))

    // The variant's guard around the dependency call.
    let guarded: Effect.Effect<Quote, { readonly _tag: string }>
    let bulkhead: Bulkhead.Bulkhead | undefined
    let breaker: CircuitBreaker.CircuitBreaker | undefined
    let retry: Retry.Retry<{ readonly _tag: string }> | undefined
    if (variant === "unprotected") {
      guarded = remember
    } else if (variant === "bulkhead") {
      bulkhead = yield* Bulkhead.make({
        name: "pricing",
        maxConcurrent: settings.bulkhead.maxConcurrent,
        maxQueue: settings.bulkhead.maxQueue,
        queueTimeout: settings.bulkhead.queueTimeoutMs
      })
      guarded = remember.pipe(Bulkhead.guard(bulkhead))
    } else {
      const pipeline = yield* fullPipeline(settings.pipeline, cache)
      bulkhead = pipeline.bulkhead
      breaker = pipeline.breaker
      retry = pipeline.retry
      guarded = pipeline.guard(remember)
      const opened = breaker
      yield* Effect.forkChild(Stream.runForEach(CircuitBreaker.transitions(opened), (t) =>
        Effect.sync(() => recorder.breakerTransitions.push({ atMs: t.at - origin, to: t.to }))))
    }
    // Every client gives up after the same time, whatever protects the call.
    const request = guarded.pipe(Timeout.guard({ name: "client", after: settings.clientTimeoutMs }))

    // The load generator: one fiber per request, on the seeded schedule.
    let finished = false
    const generator = yield* Effect.forkChild(Effect.gen(function*() {
      const clients: Array<Fiber.Fiber<void>> = []
      for (const at of schedule) {
        const wait = at - recorder.now()
        if (wait > 0) yield* Effect.sleep(wait)
        recorder.sent++
        const arrivedAt = recorder.now()
        clients.push(yield* Effect.forkChild(Effect.flatMap(Effect.exit(request), (exit) =>
          Effect.sync(() => recorder.answeredWith(arrivedAt, exit)))))
      }
      yield* Fiber.awaitAll(clients)
      finished = true
    }))

    // The driver: advance the virtual clock one step at a time until every request is answered.
    const breakerState = () => recorder.breakerTransitions.at(-1)?.to ?? (breaker === undefined ? undefined : "Closed")
    const progress = (done: boolean) => {
      const atMs = recorder.now()
      onProgress({ variant, atMs, phase: phaseAt(settings, atMs), recorder, breaker: breakerState(), done })
    }
    yield* Effect.yieldNow
    while (!finished) {
      yield* TestClock.adjust(settings.stepMs)
      progress(false)
    }
    yield* Fiber.join(generator)
    recorder.touch(recorder.now())
    progress(true)

    return {
      variant,
      label: variantLabels[variant],
      recorder,
      bulkhead: bulkhead === undefined ? undefined : yield* Bulkhead.stats(bulkhead),
      breaker: breaker === undefined ? undefined : yield* CircuitBreaker.stats(breaker),
      retry: retry === undefined ? undefined : yield* Retry.stats(retry),
      wallMs: performance.now() - wallStart
    }
  }).pipe(
    Effect.scoped, // closes the guards, and the transition listener
    Effect.orDie, // InvalidOptions: the settings above are valid
    // A generous warning delay: a fiber woken by the clock is waited for, however busy the machine.
    Effect.provide(TestClock.layer({ warningDelay: "1 minute" })),
    Random.withSeed(`storm-${settings.seed}-dependency`)
  )

/** Runs the three variants on the same traffic, one after the other. */
export const runStorm = (
  settings: Settings,
  onProgress?: (progress: Progress) => void
): Effect.Effect<ReadonlyArray<VariantResult>> =>
  Effect.gen(function*() {
    const schedule = yield* arrivals(settings)
    const results: Array<VariantResult> = []
    for (const variant of variantNames) results.push(yield* runVariant(settings, variant, schedule, onProgress))
    return results
  })
