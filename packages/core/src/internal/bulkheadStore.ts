import type { Acquisition, AcquireRequest, Occupancy } from "../BulkheadStore.ts"

/**
 * One bulkhead name in the in-memory store: its slots (token -> lease
 * expiry) and its waiting room (token -> ticket expiry). A `Map` iterates in
 * insertion order and `set` on a present key keeps its place, so the waiting
 * room is ordered by first enqueue, and refreshing a ticket never moves it.
 */
interface Compartment {
  readonly slots: Map<string, number>
  readonly queue: Map<string, number>
}

/**
 * The in-memory bulkhead store. Every operation is synchronous: it purges
 * what has expired at `now`, then decides. Purging and finding a ticket's
 * position scan the compartment, O(slots + tickets): both are bounded by
 * `limit + maxQueue`, small numbers for a bulkhead. A compartment that
 * holds nothing is dropped, so idle names cost no memory.
 *
 * @internal
 */
export class MemoryBulkheadStore {
  private readonly compartments = new Map<string, Compartment>()

  private live(name: string, now: number): Compartment | undefined {
    const compartment = this.compartments.get(name)
    if (compartment === undefined) return undefined
    // An expiry equal to `now` has run out: the same boundary as Redis' ZREMRANGEBYSCORE -inf now.
    for (const [token, until] of compartment.slots) if (until <= now) compartment.slots.delete(token)
    for (const [token, until] of compartment.queue) if (until <= now) compartment.queue.delete(token)
    return compartment
  }

  private drop(name: string, compartment: Compartment): void {
    if (compartment.slots.size === 0 && compartment.queue.size === 0) this.compartments.delete(name)
  }

  acquire(request: AcquireRequest): Acquisition {
    const { leaseMs, limit, maxQueue, name, now, ticketMs, token } = request
    let compartment = this.live(name, now)
    if (compartment === undefined) {
      compartment = { slots: new Map(), queue: new Map() }
      this.compartments.set(name, compartment)
    }
    const { queue, slots } = compartment
    // A repeated acquire of a slot already held (its first answer was lost) renews it.
    if (slots.has(token)) {
      slots.set(token, now + leaseMs)
      return { _tag: "Acquired", inFlight: slots.size }
    }
    const free = limit - slots.size
    const position = positionOf(queue, token)
    // Tickets ahead of this call: all of them, for a call that holds none.
    const ahead = position === -1 ? queue.size : position
    if (ahead < free) {
      queue.delete(token)
      slots.set(token, now + leaseMs)
      return { _tag: "Acquired", inFlight: slots.size }
    }
    if (position !== -1) {
      queue.set(token, now + ticketMs)
      return { _tag: "Queued", position, inFlight: slots.size }
    }
    if (queue.size < maxQueue) {
      queue.set(token, now + ticketMs)
      return { _tag: "Queued", position: queue.size - 1, inFlight: slots.size }
    }
    const full: Acquisition = { _tag: "Full", inFlight: slots.size, queued: queue.size }
    this.drop(name, compartment)
    return full
  }

  renew(name: string, token: string, leaseMs: number, now: number): boolean {
    const compartment = this.live(name, now)
    if (compartment === undefined || !compartment.slots.has(token)) return false
    compartment.slots.set(token, now + leaseMs)
    return true
  }

  release(name: string, token: string, now: number): boolean {
    const compartment = this.live(name, now)
    if (compartment === undefined) return false
    const released = compartment.slots.delete(token) || compartment.queue.delete(token)
    this.drop(name, compartment)
    return released
  }

  inspect(name: string, now: number): Occupancy {
    const compartment = this.live(name, now)
    if (compartment === undefined) return { inFlight: 0, queued: 0 }
    const occupancy = { inFlight: compartment.slots.size, queued: compartment.queue.size }
    this.drop(name, compartment)
    return occupancy
  }

  /** Names holding slots or tickets, expired ones not yet purged included (for tests). */
  get size(): number {
    return this.compartments.size
  }
}

const positionOf = (queue: Map<string, number>, token: string): number => {
  if (!queue.has(token)) return -1
  let position = 0
  for (const key of queue.keys()) {
    if (key === token) return position
    position++
  }
  return -1
}
