/**
 * The bulkhead suites: Bulwark's `Bulkhead.guard` side by side with Effect's
 * `Semaphore`, cockatiel's `bulkhead` policy and `p-limit`, in one process.
 *
 * Each suite returns plain figures; `run.ts` prints them and writes
 * docs/benchmarks.md. Run with `npm run bench` (node --expose-gc).
 */
import { Bulkhead } from "@bulwark/core"
import { bulkhead as cockatielBulkhead, BulkheadRejectedError } from "cockatiel"
import { Effect, Exit, Fiber, Latch, Option, Scope, Semaphore } from "effect"
import pLimit from "p-limit"
import { fmt, goal, median } from "./harness.ts"

// -----------------------------------------------------------------------------
// results
// -----------------------------------------------------------------------------

export interface Row {
  /** Library: "Bulwark", "Effect Semaphore", "cockatiel", "p-limit", or "(reference)". */
  readonly peer: string
  /** What exactly is measured. */
  readonly variant: string
  /** Median over the measured rounds. */
  readonly value: number
  readonly min: number
  readonly max: number
  readonly rounds: number
  /** Reference rows (no limiter) are shown but get no ratio. */
  readonly reference?: boolean
  /** Extra figure shown in its own column (e.g. the cost net of the bare loop). */
  readonly extra?: number | undefined
}

export interface Goal {
  readonly text: string
  readonly met: boolean
  /** Missed by less than the run-to-run noise (5%). */
  readonly withinNoise?: boolean
  readonly detail: string
}

export interface Table {
  readonly id: string
  readonly title: string
  readonly unit: string
  /** Index in `rows` of the Bulwark row every ratio is taken against. */
  readonly base: number
  readonly rows: ReadonlyArray<Row>
  /** Header of the `extra` column, when rows have one. */
  readonly extraHeader?: string
  readonly notes?: ReadonlyArray<string>
}

export interface ScenarioResult {
  readonly id: string
  readonly title: string
  readonly tables: ReadonlyArray<Table>
  readonly goals: ReadonlyArray<Goal>
  readonly seconds: number
}

// -----------------------------------------------------------------------------
// harness
// -----------------------------------------------------------------------------

const gc = (): void => {
  const collect = globalThis.gc
  if (collect === undefined) throw new Error("run with node --expose-gc (npm run bench does)")
  collect()
  collect()
}

const heapUsed = (): number => {
  gc()
  return process.memoryUsage().heapUsed
}

const debug = (message: string): void => {
  if (process.env.BENCH_DEBUG !== undefined) console.log(`  [debug] ${message}`)
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * Lets timers and scheduled tasks left over from the previous measurement run
 * (e.g. the Semaphore's deferred waiter scans, which hold its old waiters)
 * before a heap baseline is taken.
 */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve) => setTimeout(resolve, 2))
    await nextTurn()
  }
}

const until = async (condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> => {
  const start = performance.now()
  while (!condition()) {
    if (performance.now() - start > timeoutMs) throw new Error(`bench: timed out waiting for ${what}`)
    await nextTurn()
  }
}

interface Case {
  readonly peer: string
  readonly variant: string
  readonly reference?: boolean
  /** Runs one round; resolves with the figure of that round (ns per call, ms, ...). */
  readonly round: () => Promise<number>
  /** Skip further rounds of this case once it has spent this long (ms) and has `minRounds`. */
  readonly budgetMs?: number
}

interface Measured {
  readonly case: Case
  readonly samples: Array<number>
  spentMs: number
}

/**
 * Runs every case `warmup + rounds` times, interleaved (each round runs every
 * case once, in a rotating order) so that drift and GC debt from one case do
 * not all land on another. A full GC runs before every round.
 */
const measure = async (
  cases: ReadonlyArray<Case>,
  options: { readonly warmup: number; readonly rounds: number; readonly minRounds?: number }
): Promise<Array<Row>> => {
  const measured: Array<Measured> = cases.map((c) => ({ case: c, samples: [], spentMs: 0 }))
  const minRounds = options.minRounds ?? options.rounds
  for (let r = 0; r < options.warmup + options.rounds; r++) {
    for (let k = 0; k < measured.length; k++) {
      const m = measured[(k + r) % measured.length]
      const budget = m.case.budgetMs
      if (budget !== undefined && m.samples.length >= minRounds && m.spentMs >= budget) continue
      gc()
      const start = performance.now()
      const figure = await m.case.round()
      const spent = performance.now() - start
      if (r >= options.warmup) {
        m.samples.push(figure)
        m.spentMs += spent
      }
    }
  }
  return measured.map((m) => ({
    peer: m.case.peer,
    variant: m.case.variant,
    value: median(m.samples),
    min: Math.min(...m.samples),
    max: Math.max(...m.samples),
    rounds: m.samples.length,
    ...(m.case.reference === true ? { reference: true } : {})
  }))
}

/** A Bulwark bulkhead living in its own scope, so that the suites can drive it from plain async code. */
const makeBulwark = (options: Bulkhead.Options) => {
  const scope = Scope.makeUnsafe()
  const bulkhead = Effect.runSync(Bulkhead.make(options).pipe(Scope.provide(scope)))
  return { bulkhead, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** Times an effect that performs `calls` calls; the figure is ns per call. */
const nsPerCall = (calls: number, effect: Effect.Effect<unknown, unknown>) => async (): Promise<number> => {
  const start = performance.now()
  await Effect.runPromise(effect)
  return ((performance.now() - start) * 1e6) / calls
}

const nsPerCallAsync = (calls: number, body: () => Promise<void>) => async (): Promise<number> => {
  const start = performance.now()
  await body()
  return ((performance.now() - start) * 1e6) / calls
}

const byVariant = (rows: ReadonlyArray<Row>, variant: string): Row => {
  const row = rows.find((r) => r.variant === variant)
  if (row === undefined) throw new Error(`bench: no row ${variant}`)
  return row
}


// -----------------------------------------------------------------------------
// 1. uncontended guarded no-op
// -----------------------------------------------------------------------------

const UNCONTENDED_CALLS = 100_000

export const uncontended = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const N = UNCONTENDED_CALLS
  const { bulkhead: b, close } = makeBulwark({ name: "bench-uncontended", maxConcurrent: 10 })
  const sem = Semaphore.makeUnsafe(10)
  const policy = cockatielBulkhead(10, 0)
  const limit = pLimit(10)
  const noop = () => undefined
  const asyncNoop = async () => undefined

  const guarded = Bulkhead.guard(b)
  const withOne = sem.withPermits(1)

  const cases: Array<Case> = [
    {
      peer: "Bulwark",
      variant: "guard built once: `guarded(Effect.void)`",
      round: nsPerCall(N, Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* guarded(Effect.void)
      }))
    },
    {
      peer: "Bulwark",
      variant: "guard applied each call: `Effect.void.pipe(Bulkhead.guard(b))`",
      round: nsPerCall(N, Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void.pipe(Bulkhead.guard(b))
      }))
    },
    {
      peer: "Effect Semaphore",
      variant: "withPermits built once: `withOne(Effect.void)`",
      round: nsPerCall(N, Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* withOne(Effect.void)
      }))
    },
    {
      peer: "Effect Semaphore",
      variant: "applied each call: `sem.withPermits(1)(Effect.void)`",
      round: nsPerCall(N, Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* sem.withPermits(1)(Effect.void)
      }))
    },
    {
      peer: "cockatiel",
      variant: "`await policy.execute(noop)`",
      round: nsPerCallAsync(N, async () => {
        for (let i = 0; i < N; i++) await policy.execute(noop)
      })
    },
    {
      peer: "p-limit",
      variant: "`await limit(noop)`",
      round: nsPerCallAsync(N, async () => {
        for (let i = 0; i < N; i++) await limit(noop)
      })
    },
    {
      peer: "(reference)",
      variant: "bare Effect loop: `yield* Effect.void`",
      reference: true,
      round: nsPerCall(N, Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void
      }))
    },
    {
      peer: "(reference)",
      variant: "bare promise loop: `await asyncNoop()`",
      reference: true,
      round: nsPerCallAsync(N, async () => {
        for (let i = 0; i < N; i++) await asyncNoop()
      })
    }
  ]

  const measured = await measure(cases, { warmup: 2, rounds: 7 })
  const effectLoop = byVariant(measured, cases[6].variant).value
  const promiseLoop = byVariant(measured, cases[7].variant).value
  const rows = measured.map((row, i) => ({
    ...row,
    extra: row.reference === true ? undefined : row.value - (i <= 3 ? effectLoop : promiseLoop)
  }))
  await close()

  const [bOnce, bEach, sOnce, sEach] = rows
  const goals: Array<Goal> = [
    goal(
      "Uncontended: Bulwark no slower than `Semaphore.withPermits` (guard built once vs withPermits built once)",
      bOnce.value,
      sOnce.value,
      `${fmt(bOnce.value)} vs ${fmt(sOnce.value)} ns/call (Bulwark = ${fmt(bOnce.value / sOnce.value, 2)}x the Semaphore)`
    ),
    goal(
      "Uncontended: Bulwark no slower than `Semaphore.withPermits` (both applied on every call)",
      bEach.value,
      sEach.value,
      `${fmt(bEach.value)} vs ${fmt(sEach.value)} ns/call (Bulwark = ${fmt(bEach.value / sEach.value, 2)}x the Semaphore)`
    )
  ]
  return {
    id: "uncontended",
    title: "1. Uncontended guarded no-op",
    tables: [{
      id: "uncontended",
      title: `Loop of ${N.toLocaleString("en-US")} sequential calls to a no-op through a limiter with free slots`,
      unit: "ns/call",
      base: 0,
      rows,
      extraHeader: "net of bare loop (ns)",
      notes: [
        "Effect rows run in one fiber (`Effect.gen` loop, `Effect.runPromise`); promise rows `await` each call in an async loop.",
        "\"net of bare loop\" subtracts the matching reference loop (Effect rows: bare Effect loop; promise rows: bare promise loop)."
      ]
    }],
    goals,
    seconds: (performance.now() - started) / 1000
  }
}

// -----------------------------------------------------------------------------
// 2. 10k concurrent callers on 100 slots
// -----------------------------------------------------------------------------

const CALLERS = 10_000
const SLOTS = 100
const WARMUP_CALLERS = 1_000

type Guard = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, unknown, R>
type Limit = (op: () => Promise<unknown>) => Promise<unknown>

const sleep1 = () => new Promise<void>((resolve) => setTimeout(resolve, 1))

/** Runs `callers` fibers at once (unbounded `Effect.forEach`), each guarding a 1 ms sleep; the figure is wall ms. */
const effectWall = (guard: Guard, callers: number) => async (): Promise<number> => {
  const op = Effect.sleep("1 millis")
  const start = performance.now()
  await Effect.runPromise(
    Effect.forEach(Array.from({ length: callers }), () => guard(op), { concurrency: "unbounded", discard: true })
  )
  return performance.now() - start
}

const promiseWall = (limit: Limit, callers: number) => async (): Promise<number> => {
  const start = performance.now()
  const calls: Array<Promise<unknown>> = []
  for (let i = 0; i < callers; i++) calls.push(limit(sleep1))
  await Promise.all(calls)
  return performance.now() - start
}

interface HeapFigure {
  readonly rounds: number
  /** Heap growth with every caller parked, divided by the number of callers. */
  readonly perCaller: number
  /** Heap growth divided by the callers waiting in the limiter. */
  readonly perWaiter: number
  /** (growth - growth of the same callers parked without a limiter) / callers waiting in the limiter. */
  readonly netPerWaiter: number
  readonly waiting: number
}

/**
 * Parks `CALLERS` callers: the first `SLOTS` are admitted and block on a gate,
 * the rest wait in the limiter. Measures the heap (after a full GC) once every
 * caller has arrived, against the heap just before the callers were started.
 */
const effectHeap = async (guard: Guard | undefined): Promise<number> => {
  const gate = Latch.makeUnsafe(false)
  let arrived = 0
  let entered = 0
  const op = Effect.suspend(() => {
    entered++
    return gate.await
  })
  const caller = guard === undefined
    ? Effect.suspend(() => {
      arrived++
      return op
    })
    : Effect.suspend(() => {
      arrived++
      return guard(op)
    })
  const items = Array.from({ length: CALLERS })
  const program = Effect.forEach(items, () => caller, { concurrency: "unbounded", discard: true })
  await settle()
  const before = heapUsed()
  const fiber = Effect.runFork(program)
  const admitted = guard === undefined ? CALLERS : SLOTS
  await until(() => arrived === CALLERS && entered === admitted, "every caller to arrive")
  // Let the fibers settle in their wait (any scheduled wake-ups run now).
  await nextTurn()
  const after = heapUsed()
  if (entered !== admitted) throw new Error(`bench: ${entered} callers entered, expected ${admitted}`)
  gate.openUnsafe()
  await Effect.runPromise(Fiber.join(fiber))
  debug(`effect heap ${guard === undefined ? "bare" : "guarded"}: before ${before} after ${after} (+${after - before})`)
  return after - before
}

const promiseHeap = async (limit: Limit | undefined): Promise<number> => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => {
    release = resolve
  })
  let arrived = 0
  let entered = 0
  const op = () => {
    entered++
    return gate
  }
  const caller = limit === undefined
    ? async () => {
      arrived++
      await op()
    }
    : async () => {
      arrived++
      await limit(op)
    }
  const calls = new Array<Promise<void>>(CALLERS)
  await settle()
  const before = heapUsed()
  for (let i = 0; i < CALLERS; i++) calls[i] = caller()
  const admitted = limit === undefined ? CALLERS : SLOTS
  await until(() => arrived === CALLERS && entered === admitted, "every caller to arrive")
  await nextTurn()
  const after = heapUsed()
  if (entered !== admitted) throw new Error(`bench: ${entered} callers entered, expected ${admitted}`)
  release()
  await Promise.all(calls)
  debug(`promise heap ${limit === undefined ? "bare" : "limited"}: before ${before} after ${after} (+${after - before})`)
  return after - before
}

const HEAP_ROUNDS = 2

const heapFigure = async (
  measureOnce: () => Promise<number>,
  bareBytes: number,
  rounds = HEAP_ROUNDS
): Promise<HeapFigure> => {
  const samples: Array<number> = []
  for (let i = 0; i < rounds; i++) samples.push(await measureOnce())
  const bytes = median(samples)
  const waiting = CALLERS - SLOTS
  return {
    rounds,
    perCaller: bytes / CALLERS,
    perWaiter: bytes / waiting,
    netPerWaiter: (bytes - bareBytes) / waiting,
    waiting
  }
}

export const concurrent = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const { bulkhead: b, close } = makeBulwark({ name: "bench-concurrent", maxConcurrent: SLOTS, maxQueue: CALLERS })
  const sem = Semaphore.makeUnsafe(SLOTS)
  const policy = cockatielBulkhead(SLOTS, CALLERS)
  const limit = pLimit(SLOTS)

  const bulwarkGuard: Guard = Bulkhead.guard(b)
  const semaphoreGuard: Guard = sem.withPermits(1)
  const cockatielLimit: Limit = (op) => policy.execute(op)
  const pLimitLimit: Limit = (op) => limit(op)

  // Warm-up with fewer callers (the Semaphore takes ~1 s per 10k round).
  for (let i = 0; i < 2; i++) {
    await effectWall(bulwarkGuard, WARMUP_CALLERS)()
    await effectWall(semaphoreGuard, WARMUP_CALLERS)()
    await promiseWall(cockatielLimit, WARMUP_CALLERS)()
    await promiseWall(pLimitLimit, WARMUP_CALLERS)()
  }

  const cases: Array<Case> = [
    { peer: "Bulwark", variant: "`Bulkhead.guard` (maxConcurrent 100, maxQueue 10k)", round: effectWall(bulwarkGuard, CALLERS) },
    {
      peer: "Effect Semaphore",
      variant: "`sem.withPermits(1)` (100 permits)",
      round: effectWall(semaphoreGuard, CALLERS),
      budgetMs: 1_000
    },
    { peer: "cockatiel", variant: "`bulkhead(100, 10_000).execute`", round: promiseWall(cockatielLimit, CALLERS) },
    { peer: "p-limit", variant: "`pLimit(100)`", round: promiseWall(pLimitLimit, CALLERS) },
    {
      peer: "(reference)",
      variant: "`Effect.forEach` with `concurrency: 100`, no limiter",
      reference: true,
      round: async () => {
        const op = Effect.sleep("1 millis")
        const start = performance.now()
        await Effect.runPromise(Effect.forEach(Array.from({ length: CALLERS }), () => op, { concurrency: SLOTS, discard: true }))
        return performance.now() - start
      }
    }
  ]
  debug(`warm-up done at ${fmt(performance.now() - started)} ms`)
  const wall = await measure(cases, { warmup: 0, rounds: 5, minRounds: 1 })
  debug(`wall done at ${fmt(performance.now() - started)} ms`)

  // Heap: parked callers without a limiter first, so each world has its baseline.
  const effectBare = median([await effectHeap(undefined), await effectHeap(undefined)])
  const promiseBare = median([await promiseHeap(undefined), await promiseHeap(undefined)])
  const heap: Array<[string, string, HeapFigure]> = [
    ["Bulwark", cases[0].variant, await heapFigure(() => effectHeap(bulwarkGuard), effectBare)],
    // One round: draining 10k Semaphore waiters takes about a second (it rescans them), and the figure is stable.
    ["Effect Semaphore", cases[1].variant, await heapFigure(() => effectHeap(semaphoreGuard), effectBare, 1)],
    ["cockatiel", cases[2].variant, await heapFigure(() => promiseHeap(cockatielLimit), promiseBare)],
    ["p-limit", cases[3].variant, await heapFigure(() => promiseHeap(pLimitLimit), promiseBare)]
  ]
  debug(`heap done at ${fmt(performance.now() - started)} ms`)
  await close()

  const heapRows: Array<Row> = heap.map(([peer, variant, h]) => ({
    peer,
    variant,
    value: h.netPerWaiter,
    min: h.netPerWaiter,
    max: h.netPerWaiter,
    rounds: h.rounds,
    extra: h.perCaller
  }))
  heapRows.push(
    {
      peer: "(reference)",
      variant: "no limiter: a fiber parked on a `Latch`",
      value: Number.NaN,
      min: Number.NaN,
      max: Number.NaN,
      rounds: HEAP_ROUNDS,
      reference: true,
      extra: effectBare / CALLERS
    },
    {
      peer: "(reference)",
      variant: "no limiter: an async function awaiting a promise",
      value: Number.NaN,
      min: Number.NaN,
      max: Number.NaN,
      rounds: HEAP_ROUNDS,
      reference: true,
      extra: promiseBare / CALLERS
    }
  )

  const limiters = wall.filter((r) => r.reference !== true)
  const fastest = limiters.reduce((a, r) => (r.value < a.value ? r : a))
  const bulwarkWall = wall[0]
  const bulwarkHeap = heap[0][2]
  const goals: Array<Goal> = [
    goal(
      "10k callers: wall time within 1.1x of the fastest peer",
      bulwarkWall.value,
      1.1 * fastest.value,
      `Bulwark ${fmt(bulwarkWall.value)} ms, fastest ${fastest.peer} ${fmt(fastest.value)} ms (Bulwark = ${
        fmt(bulwarkWall.value / fastest.value, 2)
      }x the fastest)`
    ),
    goal(
      "10k callers: <= 400 B of heap per waiting caller",
      bulwarkHeap.netPerWaiter,
      400,
      `${fmt(bulwarkHeap.netPerWaiter)} B per waiter more than a fiber parked on a latch; ${
        fmt(bulwarkHeap.perCaller)
      } B per caller counting the whole fiber`
    )
  ]
  return {
    id: "concurrent",
    title: "2. 10k concurrent callers on 100 slots, 1 ms operation",
    tables: [
      {
        id: "concurrent-wall",
        title: `${CALLERS.toLocaleString("en-US")} callers started at once, ${SLOTS} slots, each call sleeps 1 ms: wall time until all are done`,
        unit: "ms",
        base: 0,
        rows: wall,
        notes: [
          "Effect rows: `Effect.forEach(..., { concurrency: \"unbounded\" })` over `guard(Effect.sleep(\"1 millis\"))`; promise rows: `Promise.all` over `limit(() => setTimeout 1 ms)`.",
          "The floor is 100 waves of a 1 ms timer (Node fires a 1 ms timer after 1-2 ms), so ~120-200 ms. The Effect rows also pay for starting 10,000 fibers at once before the first wave ends; the no-limiter `Effect.forEach` row (which starts only 100 fibers at a time) shows what the Effect runtime itself costs here."
        ]
      },
      {
        id: "concurrent-heap",
        title: `Heap per waiting caller: ${CALLERS.toLocaleString("en-US")} callers parked, ${SLOTS} admitted and blocked, ${
          (CALLERS - SLOTS).toLocaleString("en-US")
        } waiting`,
        unit: "B/waiter",
        base: 0,
        rows: heapRows,
        extraHeader: "all callers, B/caller",
        notes: [
          "B/waiter = (heap with every caller parked - heap with the same callers parked on a plain latch or promise, no limiter) / 9,900 waiters: what the limiter adds for each queued caller. Heap is `process.memoryUsage().heapUsed` after two `global.gc()` calls; median of 2 rounds (1 for the Semaphore).",
          "\"all callers, B/caller\" is the whole heap growth (fiber or async function included) divided by the 10,000 callers."
        ]
      }
    ],
    goals,
    seconds: (performance.now() - started) / 1000
  }
}

// -----------------------------------------------------------------------------
// 3. the cost of one rejection
// -----------------------------------------------------------------------------

const REJECTIONS = 100_000

export const rejection = async (): Promise<ScenarioResult> => {
  const started = performance.now()
  const N = REJECTIONS
  const { bulkhead: b, close } = makeBulwark({ name: "bench-rejection", maxConcurrent: 1, maxQueue: 0 })
  const guarded = Bulkhead.guard(b)
  const gate = Latch.makeUnsafe(false)
  // Hold the only slot for the whole scenario.
  const holder = Effect.runFork(guarded(gate.await))
  await until(() => Effect.runSync(Bulkhead.stats(b)).inFlight === 1, "the slot to be taken")

  const sem = Semaphore.makeUnsafe(1)
  Effect.runSync(sem.take(1))
  const ifAvailable = sem.withPermitsIfAvailable(1)

  const policy = cockatielBulkhead(1, 0)
  let releaseCockatiel!: () => void
  const cockatielHolder = policy.execute(() =>
    new Promise<void>((resolve) => {
      releaseCockatiel = resolve
    })
  )
  const noop = () => undefined
  const asyncNoop = async () => undefined

  // One real rejection, kept for the no-limiter reference loops (counted in the check below).
  const prebuilt = Effect.runSync(Effect.flip(guarded(Effect.void)))
  let seen = 0
  let handled = 0
  const cases: Array<Case> = [
    {
      peer: "Bulwark",
      variant: "`guarded(Effect.void).pipe(Effect.catchTag(\"BulkheadFull\", ...))`",
      round: nsPerCall(
        N,
        Effect.gen(function*() {
          for (let i = 0; i < N; i++) {
            yield* guarded(Effect.void).pipe(Effect.catchTag("BulkheadFull", () => Effect.sync(() => void seen++)))
          }
        })
      )
    },
    {
      peer: "Bulwark",
      variant: "`Effect.exit(guarded(Effect.void))`",
      round: nsPerCall(
        N,
        Effect.gen(function*() {
          for (let i = 0; i < N; i++) {
            const exit = yield* Effect.exit(guarded(Effect.void))
            if (Exit.isFailure(exit)) seen++
          }
        })
      )
    },
    {
      peer: "Effect Semaphore",
      variant: "`withPermitsIfAvailable(1)(Effect.void)` returns `None`",
      round: nsPerCall(
        N,
        Effect.gen(function*() {
          for (let i = 0; i < N; i++) {
            const result = yield* ifAvailable(Effect.void)
            if (Option.isNone(result)) seen++
          }
        })
      )
    },
    {
      peer: "cockatiel",
      variant: "`await policy.execute(noop)` throws `BulkheadRejectedError`",
      round: nsPerCallAsync(N, async () => {
        for (let i = 0; i < N; i++) {
          try {
            await policy.execute(noop)
          } catch (e) {
            if (e instanceof BulkheadRejectedError) seen++
          }
        }
      })
    },
    {
      peer: "(reference)",
      variant: "no limiter: `Effect.fail(prebuiltError).pipe(Effect.catchTag(\"BulkheadFull\", ...))`",
      reference: true,
      round: nsPerCall(
        N,
        Effect.gen(function*() {
          for (let i = 0; i < N; i++) {
            yield* Effect.fail(prebuilt).pipe(Effect.catchTag("BulkheadFull", () => Effect.sync(() => void handled++)))
          }
        })
      )
    },
    {
      peer: "(reference)",
      variant: "no limiter: `Effect.exit(Effect.fail(prebuiltError))`",
      reference: true,
      round: nsPerCall(
        N,
        Effect.gen(function*() {
          for (let i = 0; i < N; i++) {
            const exit = yield* Effect.exit(Effect.fail(prebuilt))
            if (Exit.isFailure(exit)) handled++
          }
        })
      )
    },
    {
      peer: "(reference)",
      variant: "bare Effect loop: `yield* Effect.void`",
      reference: true,
      round: nsPerCall(N, Effect.gen(function*() {
        for (let i = 0; i < N; i++) yield* Effect.void
      }))
    },
    {
      peer: "(reference)",
      variant: "bare promise loop: `await asyncNoop()`",
      reference: true,
      round: nsPerCallAsync(N, async () => {
        for (let i = 0; i < N; i++) await asyncNoop()
      })
    }
  ]
  const warmup = 1
  const rounds = 5
  const measured = await measure(cases, { warmup, rounds })
  // Net figures: what the limiter adds to the same handling of a failure it did not have to build.
  const net = [measured[4].value, measured[5].value, measured[6].value, measured[7].value]
  const rows = measured.map((row, i) => ({ ...row, extra: i < 4 ? row.value - net[i] : undefined }))

  // Every limiter call above must have been a rejection.
  const limiterCases = 4
  const expected = (warmup + rounds) * N * limiterCases
  const stats = Effect.runSync(Bulkhead.stats(b))
  if (seen !== expected) throw new Error(`bench: ${seen} rejections seen, expected ${expected}`)
  if (handled !== (warmup + rounds) * N * 2) throw new Error(`bench: ${handled} reference failures handled`)
  if (stats.rejected.QueueFull !== (warmup + rounds) * N * 2 + 1) {
    throw new Error(`bench: Bulwark counted ${stats.rejected.QueueFull} rejections`)
  }

  gate.openUnsafe()
  await Effect.runPromise(Fiber.join(holder))
  releaseCockatiel()
  await cockatielHolder
  await close()

  const [withCatchTag, withExit] = rows
  const goals: Array<Goal> = [
    {
      ...goal("Rejection: one `BulkheadFull` rejection caught with `Effect.exit` costs <= 1 microsecond", withExit.value, 1000, ""),
      detail: `${fmt(withExit.value)} ns per rejected call, loop and handling included; ${
        fmt(withExit.extra ?? 0)
      } ns more than failing with a prebuilt error without a limiter`
    },
    {
      ...goal("Rejection: one `BulkheadFull` rejection caught with `Effect.catchTag` costs <= 1 microsecond", withCatchTag.value, 1000, ""),
      detail: `${fmt(withCatchTag.value)} ns per rejected call, loop and handling included; ${
        fmt(withCatchTag.extra ?? 0)
      } ns more than failing with a prebuilt error without a limiter (\`catchTag\` itself costs ${
        fmt(rows[4].value - rows[6].value)
      } ns per call here)`
    }
  ]
  return {
    id: "rejection",
    title: "3. Cost of one rejection",
    tables: [{
      id: "rejection",
      title: `Loop of ${N.toLocaleString("en-US")} calls to a full limiter (the only slot held, no queue)`,
      unit: "ns/call",
      base: 0,
      rows,
      extraHeader: "limiter's share (ns)",
      notes: [
        "\"limiter's share\" subtracts the matching no-limiter loop, so it is what the rejection itself costs (admission check, error, failure): each Bulwark row minus the `Effect.fail(prebuiltError)` loop handled the same way, the Semaphore (which returns `None` rather than failing) minus the bare Effect loop, cockatiel minus the bare promise loop.",
        "The `Effect.catchTag` reference row shows that the handler alone costs several hundred ns per failure in Effect 4.1.0; `Effect.exit` is the cheap way to observe a rejection.",
        "p-limit has no rejection mode (it always queues), so it has no row here.",
        "Bulwark's `BulkheadFull` is built without a stack trace; cockatiel's `BulkheadRejectedError` captures one."
      ]
    }],
    goals,
    seconds: (performance.now() - started) / 1000
  }
}

export const suites: ReadonlyArray<{ readonly name: string; readonly run: () => Promise<ScenarioResult> }> = [
  { name: "uncontended", run: uncontended },
  { name: "concurrent", run: concurrent },
  { name: "rejection", run: rejection }
]
