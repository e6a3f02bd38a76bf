/**
 * Bulwark's metrics and traces go out through `@effect/opentelemetry` like
 * any other Effect telemetry. Here they go to in-memory exporters of the
 * OpenTelemetry SDK, so that the program can read back what an OTLP or a
 * console exporter would have sent: the spans with their Bulwark attributes
 * and events, and the pull-based metrics, read when the reader collects.
 */
import { Bulkhead, CircuitBreaker, Retry } from "@bulwark/core"
// Subpath imports: the package root also loads the logger, which needs @opentelemetry/api-logs.
import * as OtelMetrics from "@effect/opentelemetry/OtelMetrics"
import * as OtelTracer from "@effect/opentelemetry/OtelTracer"
import * as Resource from "@effect/opentelemetry/Resource"
import { AggregationTemporality, InMemoryMetricExporter, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Data, Effect, Fiber, Latch, Layer } from "effect"
import assert from "node:assert/strict"
import { fileURLToPath } from "node:url"

class Unavailable extends Data.TaggedError("Unavailable") {}

// In production: an OTLP exporter behind a BatchSpanProcessor, and a reader that exports every minute.
const spans = new InMemorySpanExporter()
const metrics = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
const reader = new PeriodicExportingMetricReader({ exporter: metrics, exportIntervalMillis: 60_000 })

const TracerProvider = Layer.effect(
  OtelTracer.OtelTracerProvider,
  Effect.acquireRelease(
    Effect.map(Resource.Resource, (resource) =>
      new BasicTracerProvider({ resource, spanProcessors: [new SimpleSpanProcessor(spans)] })),
    (provider) => Effect.promise(() => provider.shutdown())
  )
)

/** Effect's tracer backed by the OpenTelemetry SDK, and Effect's metrics read by the SDK's reader. */
export const TelemetryLive = Layer.mergeAll(
  OtelTracer.layer.pipe(Layer.provide(TracerProvider)),
  OtelMetrics.layer(() => reader)
).pipe(Layer.provide(Resource.layer({ serviceName: "shop" })))

export const program = Effect.gen(function*() {
  const stock = yield* Bulkhead.make({ name: "stock", maxConcurrent: 1, maxQueue: 10 })
  const breaker = yield* CircuitBreaker.make({ name: "stock", trip: CircuitBreaker.consecutive(5), openFor: "30 seconds" })
  const retry = yield* Retry.make({ name: "stock", maxAttempts: 3, base: "5 millis", jitter: "none" })

  // The stock service fails twice, then answers.
  let calls = 0
  const reserve = Effect.suspend(() => ++calls <= 2 ? Effect.fail(new Unavailable()) : Effect.succeed("reserved"))
  const reserveGuarded = reserve.pipe(CircuitBreaker.guard(breaker), Retry.guard(retry), Bulkhead.guard(stock))

  // Another call holds the bulkhead's only permit, so the checkout queues behind it.
  const release = yield* Latch.make()
  const holder = yield* Effect.forkChild(release.await.pipe(Bulkhead.guard(stock)), { startImmediately: true })
  const checkout = yield* Effect.forkChild(reserveGuarded.pipe(Effect.withSpan("checkout")), { startImmediately: true })
  yield* release.open
  assert.equal(yield* Fiber.join(checkout), "reserved")
  yield* Fiber.join(holder)

  // What the span exporter received: the caller's span with Bulwark's attribute and events, and a
  // child span for the wait in the bulkhead's queue.
  const lines: Array<string> = []
  const finished = spans.getFinishedSpans()
  const checkoutSpan = finished.find((span) => span.name === "checkout")!
  const children = finished.filter((span) => span.parentSpanContext?.spanId === checkoutSpan.spanContext().spanId)
  lines.push(`span checkout bulwark.circuitbreaker.state=${checkoutSpan.attributes["bulwark.circuitbreaker.state"]}`)
  for (const event of checkoutSpan.events) {
    lines.push(`  event ${event.name} attempt=${event.attributes?.["bulwark.retry.attempt"]} delay_ms=${event.attributes?.["bulwark.retry.delay_ms"]}`)
  }
  for (const child of children) {
    lines.push(`  span ${child.name} bulwark.bulkhead.outcome=${child.attributes["bulwark.bulkhead.outcome"]}`)
  }

  // What the metric reader collects (pull-based series are computed now).
  yield* Effect.promise(() => reader.forceFlush())
  const exported = metrics.getMetrics().at(-1)!.scopeMetrics.flatMap((scope) => scope.metrics)
  for (const id of ["bulwark.bulkhead.admitted", "bulwark.circuitbreaker.failures", "bulwark.retry.retries"]) {
    const point = exported.find((metric) => metric.descriptor.name === id)?.dataPoints.find((p) => p.attributes.name === "stock")
    lines.push(`metric ${id}{name=stock} ${point?.value}`)
  }

  assert.deepEqual(lines, [
    "span checkout bulwark.circuitbreaker.state=Closed",
    "  event bulwark.retry.retrying attempt=1 delay_ms=5",
    "  event bulwark.retry.retrying attempt=2 delay_ms=10",
    "  span bulwark.bulkhead.wait bulwark.bulkhead.outcome=Admitted",
    "metric bulwark.bulkhead.admitted{name=stock} 2",
    "metric bulwark.circuitbreaker.failures{name=stock} 2",
    "metric bulwark.retry.retries{name=stock} 2"
  ])
  return lines
}).pipe(Effect.scoped, Effect.provide(TelemetryLive))

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const line of await Effect.runPromise(program)) console.log(line)
}
