import type { Claim } from "../IdempotencyStore.ts"

interface InFlight {
  readonly _tag: "InFlight"
  readonly token: string
  leaseUntil: number
}

interface Completed {
  readonly _tag: "Completed"
  readonly encoded: string
  readonly storedAt: number
  readonly expiresAt: number
}

type Entry = InFlight | Completed

/** Below this many keys a sweep is not worth it. */
const minSweep = 1024

/**
 * The in-memory idempotency store: one entry per live key. An entry whose
 * lease or time to live has run out is the same as no entry; it is dropped
 * when its key is next touched, or by the sweep that runs whenever the map
 * has doubled since the last one (amortized O(1) per claim).
 *
 * @internal
 */
export class MemoryStore {
  private readonly entries = new Map<string, Entry>()
  /** Tokens are unique in the store, so also per key across expiry and reuse. */
  private tokens = 0
  private sweepAt = minSweep

  /** The live entry of `key` at `now`, dropping an expired one. */
  private live(key: string, now: number): Entry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if ((entry._tag === "InFlight" ? entry.leaseUntil : entry.expiresAt) > now) return entry
    this.entries.delete(key)
    return undefined
  }

  /** The in-flight entry of `key` if `token` owns it at `now`. */
  private owned(key: string, token: string, now: number): InFlight | undefined {
    const entry = this.live(key, now)
    return entry !== undefined && entry._tag === "InFlight" && entry.token === token ? entry : undefined
  }

  private sweep(now: number): void {
    for (const key of this.entries.keys()) this.live(key, now)
    this.sweepAt = Math.max(minSweep, this.entries.size * 2)
  }

  claim(key: string, leaseMs: number, now: number): Claim {
    const entry = this.live(key, now)
    if (entry !== undefined) {
      return entry._tag === "InFlight"
        ? { _tag: "InFlight", leaseLeftMs: entry.leaseUntil - now }
        : { _tag: "Completed", encoded: entry.encoded, storedAt: entry.storedAt }
    }
    if (this.entries.size >= this.sweepAt) this.sweep(now)
    const token = String(++this.tokens)
    this.entries.set(key, { _tag: "InFlight", token, leaseUntil: now + leaseMs })
    return { _tag: "Claimed", token }
  }

  complete(key: string, token: string, encoded: string, ttlMs: number, now: number): boolean {
    if (this.owned(key, token, now) === undefined) return false
    this.entries.set(key, { _tag: "Completed", encoded, storedAt: now, expiresAt: now + ttlMs })
    return true
  }

  abandon(key: string, token: string, now: number): boolean {
    if (this.owned(key, token, now) === undefined) return false
    this.entries.delete(key)
    return true
  }

  renew(key: string, token: string, leaseMs: number, now: number): boolean {
    const entry = this.owned(key, token, now)
    if (entry === undefined) return false
    entry.leaseUntil = now + leaseMs
    return true
  }

  /** Entries held, expired ones not yet dropped included (for tests). */
  get size(): number {
    return this.entries.size
  }
}
