import { type Cause, Effect, Queue, Stream } from "effect"

/**
 * The listeners of a primitive's `events` stream. Emitting costs one size
 * check while nobody listens, so primitives build event objects only when
 * `active` is true. Each listener has its own sliding buffer: a slow consumer
 * loses its oldest events instead of slowing the primitive down.
 *
 * @internal
 */
export class EventHub<A> {
  private readonly listeners = new Set<Queue.Queue<A, Cause.Done>>()
  private ended = false

  get active(): boolean {
    return this.listeners.size > 0
  }

  emit(event: A): void {
    for (const queue of this.listeners) Queue.offerUnsafe(queue, event)
  }

  stream(bufferSize: number): Stream.Stream<A> {
    return Stream.callback<A>(
      (queue) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            // Subscribing after the primitive's scope closed: nothing will ever come.
            if (this.ended) Queue.endUnsafe(queue)
            else this.listeners.add(queue)
          }),
          () => Effect.sync(() => this.listeners.delete(queue))
        ),
      { bufferSize, strategy: "sliding" }
    )
  }

  /** Ends every stream, now and for later subscribers. */
  end(): void {
    this.ended = true
    for (const queue of this.listeners) Queue.endUnsafe(queue)
    this.listeners.clear()
  }
}
