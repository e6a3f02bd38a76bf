/**
 * Benchmark entry: `npm run bench` (builds, then runs `node --expose-gc bench/run.ts`).
 *
 * Runs every suite of bench/bulkhead.ts, prints one table per scenario with
 * each peer's figure and its ratio to Bulwark, and writes docs/benchmarks.md.
 *
 * Options: `--only=<suite>[,<suite>]` runs some suites (uncontended,
 * concurrent, rejection) and does not write the docs; `--no-write` skips the
 * docs. `BENCH_DEBUG=1` prints raw heap figures and phase timings.
 *
 * A suite is `{ name, run: () => Promise<ScenarioResult> }`; suites of other
 * primitives go in their own bench/<primitive>.ts and are added to `suites` below.
 */
import { execSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as bulkhead from "./bulkhead.ts"
import type { Goal, Row, ScenarioResult, Table } from "./bulkhead.ts"
import * as circuitBreaker from "./circuitbreaker.ts"
import * as policy from "./policy.ts"
import * as rateLimiter from "./ratelimiter.ts"
import * as redis from "./redis.ts"
import * as sqlite from "./sqlite.ts"

const suites = [
  ...bulkhead.suites,
  ...circuitBreaker.suites,
  { name: "ratelimiter-admitted", run: rateLimiter.admitted },
  { name: "ratelimiter-rejected", run: rateLimiter.rejected },
  ...policy.suites,
  ...redis.suites,
  ...sqlite.suites
]

const root = new URL("../", import.meta.url)

const args = process.argv.slice(2)
const only = args.find((a) => a.startsWith("--only="))?.slice("--only=".length).split(",")
const write = only === undefined && !args.includes("--no-write")

if (globalThis.gc === undefined) {
  console.error("bench: run with `node --expose-gc bench/run.ts` (or `npm run bench`)")
  process.exit(1)
}

const version = (pkg: string): string => {
  try {
    return JSON.parse(readFileSync(new URL(`node_modules/${pkg}/package.json`, root), "utf8")).version
  } catch {
    return "?"
  }
}

const revision = (): string => {
  try {
    const git = (args: string) => execSync(`git ${args}`, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
    const dirty = git("status --porcelain -- packages") === "" ? "" : " (with uncommitted changes under packages/)"
    return `${git("rev-parse --short HEAD")}${dirty}`
  } catch {
    return "unknown"
  }
}

const cpus = os.cpus()
const machine = {
  cpu: cpus[0]?.model.trim() ?? "unknown",
  cores: cpus.length,
  node: process.version,
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`
}
const versions = {
  "@bulwark/core": version("@bulwark/core"),
  effect: version("effect"),
  cockatiel: version("cockatiel"),
  opossum: version("opossum"),
  "p-limit": version("p-limit")
}

// -----------------------------------------------------------------------------
// formatting
// -----------------------------------------------------------------------------

const number = (x: number): string => {
  const abs = Math.abs(x)
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

const ratio = (row: Row, base: Row): string => {
  if (row.reference === true || Number.isNaN(row.value)) return "-"
  if (row === base) return "1.00x (base)"
  return `${(row.value / base.value).toFixed(2)}x`
}

const markdownTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`
  return [line(header), `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`, ...rows.map(line)].join("\n")
}

const renderTable = (table: Table): string => {
  const base = table.rows[table.base]
  const spread = table.rows.some((r) => r.min !== r.max && !Number.isNaN(r.min))
  const header = [
    "Peer",
    "What",
    `${table.unit} (median)`,
    ...(spread ? ["min - max"] : []),
    "vs Bulwark",
    ...(table.extraHeader === undefined ? [] : [table.extraHeader])
  ]
  const rows = table.rows.map((row) => [
    row === base ? `**${row.peer}**` : row.peer,
    row.variant,
    Number.isNaN(row.value) ? "-" : number(row.value),
    ...(spread ? [row.min === row.max || Number.isNaN(row.min) ? "" : `${number(row.min)} - ${number(row.max)}`] : []),
    ratio(row, base),
    ...(table.extraHeader === undefined ? [] : [row.extra === undefined ? "" : number(row.extra)])
  ])
  return [
    `**${table.title}**`,
    "",
    markdownTable(header, rows),
    "",
    `"vs Bulwark" = the row's figure / the **base** Bulwark row's (above 1.00x: slower or heavier than Bulwark). Measured rounds per row: ${
      [...new Set(table.rows.map((r) => r.rounds))].join(" or ")
    }.`,
    ...(table.notes ?? []).map((n) => `\n${n}`)
  ].join("\n")
}

const verdict = (g: Goal): string => g.met ? "**met**" : g.withinNoise === true ? "**missed, within noise (< 5%)**" : "**MISSED**"

const renderGoals = (goals: ReadonlyArray<Goal>): string =>
  goals.map((g) => `- ${verdict(g)}: ${g.text}. ${g.detail}.`).join("\n")

const renderScenario = (result: ScenarioResult): string =>
  [
    `### ${result.title}`,
    "",
    ...result.tables.map((t) => renderTable(t) + "\n"),
    "Goals:",
    "",
    renderGoals(result.goals),
    "",
    `(scenario took ${result.seconds.toFixed(1)} s)`
  ].join("\n")

// -----------------------------------------------------------------------------
// run
// -----------------------------------------------------------------------------

const date = new Date()
console.log(`Bulwark benchmarks: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${date.toISOString()}`)
console.log(Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(", "))
console.log()

const loadAtStart = os.loadavg()[0]
const started = performance.now()
const results: Array<ScenarioResult> = []
for (const suite of suites) {
  if (only !== undefined && !only.includes(suite.name)) continue
  console.log(`running ${suite.name} ...`)
  const result = await suite.run()
  results.push(result)
  console.log()
  console.log(renderScenario(result))
  console.log()
}
const totalSeconds = (performance.now() - started) / 1000
const loadAtEnd = os.loadavg()[0]
console.log(`all suites: ${totalSeconds.toFixed(1)} s; 1-minute load average ${loadAtStart.toFixed(2)} at start, ${loadAtEnd.toFixed(2)} at end`)

const intro = `# Benchmarks

Bulwark's primitives side by side with their peers: for the bulkhead, Effect's own \`Semaphore\`
(\`withPermits\`, \`withPermitsIfAvailable\`), [cockatiel](https://github.com/connor4312/cockatiel)'s
\`bulkhead(limit, queue)\` policy and [p-limit](https://github.com/sindresorhus/p-limit); for the circuit
breaker, Effect's \`persistence/CircuitBreaker\`, cockatiel's \`circuitBreaker\` and
[opossum](https://github.com/nodeshift/opossum); for the rate limiter, Effect's \`persistence/RateLimiter\`;
for a whole policy, cockatiel's \`wrap\` and the same guards nested by hand; on Redis, Effect's own Redis stores
of \`persistence\`; on SQLite, node:sqlite's bare statements as the floor.
Every peer runs in the same process, in the same run, so the ratios compare like with like on one machine.

## How to run

\`\`\`sh
npm run bench            # builds @bulwark/core, runs bench/run.ts, rewrites this file
node --expose-gc bench/run.ts --only=rejection   # some suites (see \`suites\` in bench/run.ts), no file written
\`\`\`

The whole run takes about two minutes. The suites live in \`bench/bulkhead.ts\`, \`bench/circuitbreaker.ts\`,
\`bench/ratelimiter.ts\`, \`bench/policy.ts\`, \`bench/redis.ts\` (it starts a \`redis-server\` of its own on a free
loopback port, and reports the suites skipped without one) and \`bench/sqlite.ts\` (real files in a temporary
directory); this file is generated by \`bench/run.ts\`, so edit those rather than the tables below.

## What each scenario measures

1. **Uncontended guarded no-op.** One fiber calls \`Effect.void\` through the limiter 100,000 times in a loop; the
   limiter always has a free slot, so this is the fixed cost of admission plus release. Bulwark is measured with
   the guard built once (\`const guarded = Bulkhead.guard(b)\`, then \`guarded(effect)\`) and applied on every call
   (\`effect.pipe(Bulkhead.guard(b))\`, which validates the options each time). The promise libraries await each
   call in an async loop. Figure: ns per call, median of 7 rounds after 2 warm-up rounds; the bare loops are shown
   so that the limiter's own share can be read off ("net of bare loop").
2. **10k concurrent callers on 100 slots, 1 ms operation.** 10,000 callers start at once; 100 run a 1 ms sleep
   while the rest queue. Figures: wall time until all are done, and the heap each *waiting* caller costs, measured
   by parking the callers (the 100 admitted ones block on a gate), forcing a GC and comparing with the same
   callers parked without a limiter. For cockatiel the queue is 10,000 long, for Bulwark \`maxQueue\` is 10,000.
3. **Cost of one rejection.** The limiter's only slot is held and it has no queue; a loop of 100,000 calls is
   rejected and handled (\`Effect.catchTag("BulkheadFull", ...)\` or \`Effect.exit\` for Bulwark, \`None\` from
   \`withPermitsIfAvailable\` for the Semaphore, a caught \`BulkheadRejectedError\` for cockatiel).
4. **Circuit breaker, closed path.** 100,000 successful calls through a closed breaker (consecutive(5); Bulwark
   also with a one-minute failure-rate window, which reads the clock on every call).
5. **Circuit breaker, open rejection.** 100,000 calls to an open breaker, each refused and the refusal handled.
6. **Rate limiter decisions.** 100,000 admitted decisions (limits far above the loop), then 100,000 rejected
   ones, against Effect's \`persistence/RateLimiter\` with its memory store.
7. **A whole policy.** Successful calls through \`Policy.guard\` (timeout, bulkhead, retry, rate limiter, breaker),
   against the same guards nested by hand and cockatiel's \`wrap\` of the same five policies.
8. **Redis.** One decision at a time (median and p99 on loopback) and 64 fibers on one connection (pipelined),
   for the rate limiter (every algorithm) and the breaker (closed call, open rejection), next to Effect's
   \`persistence\` RateLimiter and CircuitBreaker on their Redis stores and the bare round trip; round trips per
   decision counted with \`MONITOR\` and \`INFO commandstats\`.
9. **SQLite.** One decision at a time (median and p99) of every primitive on its SQLite store, next to the same
   primitive in memory and to node:sqlite's floors (a \`SELECT\` of one row, a \`BEGIN IMMEDIATE\` / \`UPDATE\` /
   \`COMMIT\`); then one rate limiter key hammered by 1 and by 4 processes: decisions per second, latency, and
   failures at the default 100 ms lock bound.

## Goals

- Uncontended: Bulwark no slower than \`Semaphore.withPermits\`.
- 10k callers: wall time within 1.1x of the fastest peer; at most 400 bytes of heap per waiting caller.
- Rejection: at most 1 microsecond per \`BulkheadFull\` rejection.
- Circuit breaker: closed path at most 400 ns per call in an in-fiber loop; rejection at most 1 microsecond.
- Rate limiter: at most 400 ns per decision.
- Policy: \`Policy.guard\` at most 10% over the same guards nested by hand, and faster than cockatiel's \`wrap\`.
- Redis: one round trip per decision (two per guarded breaker call); decision latency within 3x the bare round trip.
- SQLite: each decision within 3x node:sqlite's floor for the reads and writes it needs; p99 at most 1 ms alone;
  under 4-process contention no \`StoreError\`, no wrong rejection, p99 at most 10 ms, and no loss of throughput.

Timings on a small shared machine move by a few percent from run to run (more on 2 cores, where the GC and
the timers compete with the benchmark, and much more when other processes run: see the load average below);
the min - max columns show the spread within this run. A goal missed by less than 5% is marked "within noise";
it is still a miss.
`

const markdown = [
  intro,
  "## Results",
  "",
  `- Date: ${date.toISOString()}`,
  `- Machine: ${machine.cpu}, ${machine.cores} cores (\`os.cpus()\`), ${machine.memory} RAM, ${machine.platform}`,
  `- Node: ${machine.node}`,
  `- Versions: ${Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(", ")}; repository at ${revision()}`,
  `- 1-minute load average: ${loadAtStart.toFixed(2)} at the start, ${loadAtEnd.toFixed(2)} at the end (anything well above 1 means other processes competed for the ${machine.cores} cores)`,
  `- Total time of the suites: ${totalSeconds.toFixed(0)} s`,
  "",
  "### Goals at a glance",
  "",
  renderGoals(results.flatMap((r) => r.goals)),
  "",
  ...results.map((r) => renderScenario(r) + "\n")
].join("\n")

if (write) {
  writeFileSync(new URL("docs/benchmarks.md", root), markdown)
  console.log("wrote docs/benchmarks.md")
}
