import { RateLimiterStore } from "@bulwark/core"

/**
 * Runs `@bulwark/core`'s own rate limiting algorithms on one key's state read
 * from a row, and gives back the state to write.
 *
 * The algorithms are the in-memory store's (`RateLimiterStore.memory()`), not
 * a copy: a SQLite limiter decides exactly as an in-process one, reservations,
 * refunds and blocks included. Each decision loads the key's state into a
 * private in-memory store, runs the operation there, and reads the state
 * back out; the caller does it inside one `BEGIN IMMEDIATE` transaction.
 *
 * The state objects of the in-memory store are plain fields (numbers, arrays
 * of numbers, the algorithm's tag), which is what makes them storable as
 * JSON. This reaches into the store's `states` map, which is not part of
 * `@bulwark/core`'s public types: the two packages are released together,
 * and a state whose shape does not match what this version of core creates
 * (written by another version) is not trusted: the key starts afresh,
 * keeping only its block.
 */

type Algorithm = RateLimiterStore.Algorithm

/** The one key the private store ever holds. */
const KEY = "k"

/** What the row's `state` column holds. */
interface Stored {
  /** The algorithm the state was made for: another one (a changed configuration) starts the key afresh. */
  readonly algorithm: Algorithm
  /** The in-memory store's state object, field by field. */
  readonly fields: Record<string, unknown>
  /** The latest time a decision of this key was taken at. */
  readonly latest?: number
}

/**
 * JSON has no infinities (`blockedUntil` is `-Infinity` until a block): a
 * non-finite number is written as `{ $number: "-Infinity" }`. The states are
 * flat (numbers, arrays of numbers, the tag), so one pass over the fields
 * does it: a replacer or reviver would be called for every value.
 */
const encodeNumber = (value: unknown): unknown =>
  typeof value === "number" && !Number.isFinite(value) ? { $number: String(value) } : value

const decodeNumber = (value: unknown): unknown => {
  if (typeof value === "object" && value !== null && "$number" in value) {
    const text = (value as { readonly $number: unknown }).$number
    return text === "Infinity" ? Infinity : text === "-Infinity" ? -Infinity : Number.NaN
  }
  return value
}

const mapFields = (fields: Record<string, unknown>, f: (value: unknown) => unknown): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const name in fields) {
    const value = fields[name]
    out[name] = Array.isArray(value) ? value.map(f) : f(value)
  }
  return out
}

/** Same fields, same values: two equal algorithms built in different ways compare equal. */
const sameAlgorithm = (a: unknown, b: Algorithm): boolean => {
  if (typeof a !== "object" || a === null) return false
  const stored = a as Record<string, unknown>
  let count = 0
  for (const name in stored) {
    const expected = (b as unknown as Record<string, unknown>)[name]
    // JSON wrote a non-finite number as null.
    const same = stored[name] === expected ||
      (stored[name] === null && typeof expected === "number" && !Number.isFinite(expected))
    if (!same) return false
    count++
  }
  return count === Object.keys(b).length
}

/** The kind of a field's value, to compare a stored state with a fresh one. */
const kindOf = (value: unknown): string => {
  if (Array.isArray(value)) return value.every((v) => typeof v === "number") ? "numbers" : "array"
  return typeof value
}

/**
 * @internal
 */
export class Engine {
  private readonly local: RateLimiterStore.InProcess
  private readonly states: Map<string, Record<string, unknown>>

  constructor() {
    const local = RateLimiterStore.memory().inProcess
    const states = (local as unknown as { readonly states?: unknown } | undefined)?.states
    if (local === undefined || !(states instanceof Map)) {
      throw new Error("@bulwark/sqlite: this @bulwark/core does not keep rate limiter states as expected; use matching versions")
    }
    this.local = local
    this.states = states as Map<string, Record<string, unknown>>
  }

  /**
   * Loads `text` (a row's state, or `undefined` for a key without a row)
   * into the private store, runs `f` on it, and returns what `f` returned,
   * the state to write back and the time the key is back at rest.
   *
   * A key's time never goes backwards: `f` runs at `now`, or at the latest
   * time a decision of the key was taken at if that is later. Processes read
   * the clock before they wait for the file's lock, so the process that gets
   * the lock first may carry the later time; deciding the other one at its
   * earlier time would find the state ahead of it (a token bucket's refill
   * already applied) and reject a call the limit has room for.
   */
  run<A>(
    text: string | undefined,
    algorithm: Algorithm,
    now: number,
    f: (local: RateLimiterStore.InProcess, key: string, now: number) => A
  ): { readonly result: A; readonly state: string; readonly resetAt: number } {
    const latest = this.load(text, algorithm, now)
    const at = latest > now ? latest : now
    const result = f(this.local, KEY, at)
    const fields = this.states.get(KEY)!
    const stored: Stored = { algorithm, fields: mapFields(fields, encodeNumber), latest: at }
    const state = JSON.stringify(stored)
    const resetAt = this.local.resetAt(KEY, algorithm, at)
    this.local.forget(KEY)
    return { result, state, resetAt }
  }

  /**
   * The private store holds the key's state, restored from `text`, or a
   * fresh one. Returns the latest time the key decided at (`-Infinity` when
   * unknown).
   */
  private load(text: string | undefined, algorithm: Algorithm, now: number): number {
    this.local.forget(KEY)
    // Creates a fresh state for the algorithm (a block until -Infinity changes nothing).
    this.local.block(KEY, algorithm, -Infinity, now)
    if (text === undefined) return -Infinity
    let stored: Stored
    try {
      stored = JSON.parse(text) as Stored
    } catch {
      return -Infinity
    }
    const fresh = this.states.get(KEY)!
    if (typeof stored?.fields !== "object" || stored.fields === null) return -Infinity
    const fields = mapFields(stored.fields, decodeNumber)
    if (sameAlgorithm(stored.algorithm, algorithm) && this.fits(fresh, fields)) {
      Object.assign(fresh, fields)
      const latest = stored.latest
      return typeof latest === "number" && Number.isFinite(latest) ? latest : -Infinity
    }
    // Another algorithm, other numbers, or a state this version does not know:
    // start afresh, but a block (a server's Retry-After) still holds.
    const blockedUntil = fields.blockedUntil
    if (typeof blockedUntil === "number" && blockedUntil > now) this.local.block(KEY, algorithm, blockedUntil, now)
    return -Infinity
  }

  /** Does a stored state have exactly the fields of a fresh one, of the same kinds? */
  private fits(fresh: Record<string, unknown>, fields: Record<string, unknown>): boolean {
    const names = Object.keys(fresh)
    if (Object.keys(fields).length !== names.length) return false
    for (const name of names) {
      if (!Object.hasOwn(fields, name) || kindOf(fields[name]) !== kindOf(fresh[name])) return false
    }
    return fields.tag === fresh.tag
  }
}
