import { assert, describe, it } from "@effect/vitest"
import { Bulkhead, Policy } from "@bulwark/core"
import { Effect, Tracer } from "effect"

// A tracer that records the spans it starts, with their parents.
const recording = () => {
  const spans: Array<{ readonly name: string; readonly parent: string | undefined; readonly attributes: Map<string, unknown> }> = []
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      spans.push({
        name: options.name,
        parent: span.parent._tag === "Some" && span.parent.value._tag === "Span" ? span.parent.value.name : undefined,
        attributes: span.attributes
      })
      return span
    }
  })
  return { spans, tracer }
}

describe("Policy telemetry: a bulwark.policy span under a recording tracer and a caller's span", () => {
  it.effect("the call runs in a bulwark.policy child span named after the policy", () =>
    Effect.gen(function*() {
      const { spans, tracer } = recording()
      const policy = yield* Policy.make({ name: "payments", bulkhead: yield* Bulkhead.make({ name: "p", maxConcurrent: 1 }) })
      const result = yield* Effect.succeed("ok").pipe(
        Effect.withSpan("inner"),
        Policy.guard(policy),
        Effect.withSpan("request"),
        Effect.withTracer(tracer)
      )
      assert.strictEqual(result, "ok")
      const names = spans.map((s) => `${s.name}<${s.parent ?? "root"}`)
      assert.deepStrictEqual(names, ["request<root", "bulwark.policy<request", "inner<bulwark.policy"])
      assert.strictEqual(spans[1].attributes.get("bulwark.name"), "payments")
    }).pipe(Effect.scoped))

  it.effect("without a caller's span, or under the native tracer, no span is made", () =>
    Effect.gen(function*() {
      const { spans, tracer } = recording()
      const policy = yield* Policy.make({ name: "payments", timeout: "1 second" })
      assert.strictEqual(yield* Effect.succeed(1).pipe(Policy.guard(policy), Effect.withTracer(tracer)), 1)
      assert.deepStrictEqual(spans, [])
      assert.strictEqual(yield* Effect.succeed(2).pipe(Policy.guard(policy), Effect.withSpan("request")), 2)
    }).pipe(Effect.scoped))
})
