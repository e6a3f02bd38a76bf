// The part of opossum's API that the benchmark and the migration examples use (the package ships no
// types). Checked against opossum 9.0.0, lib/circuit.js and lib/status.js.
declare module "opossum" {
  export interface Options {
    /** Milliseconds before a call is rejected with ETIMEDOUT (it is not stopped); `false` disables. Default 10000. */
    timeout?: number | false
    /** Percentage of failed fires in the rolling window above which the circuit opens. Default 50. */
    errorThresholdPercentage?: number
    /** Milliseconds the circuit stays open before it turns half-open. Default 30000. */
    resetTimeout?: number
    /** Length of the rolling statistical window in milliseconds. Default 10000. */
    rollingCountTimeout?: number
    /** Buckets in the rolling window. Default 10. */
    rollingCountBuckets?: number
    /** Fires the window must hold before the circuit may open. Default 0. */
    volumeThreshold?: number
    /** Concurrent calls; further fires fail with ESEMLOCKED. Default Number.MAX_SAFE_INTEGER. */
    capacity?: number
    /** An error for which this returns true counts as a success, is rejected, and skips the fallback. */
    errorFilter?: (error: any, ...args: Array<any>) => boolean
    /** Failures do not open the circuit during the first rollingCountTimeout. Default false. */
    allowWarmUp?: boolean
    enabled?: boolean
    name?: string
    group?: string
    /** One controller shared by every call, aborted on a timeout. */
    abortController?: AbortController
    autoRenewAbortController?: boolean
    rollingPercentilesEnabled?: boolean
    enableSnapshots?: boolean
    cache?: boolean
    cacheTTL?: number
    coalesce?: boolean
  }

  /** Counts over the rolling window (not cumulative). */
  export interface Stats {
    failures: number
    fallbacks: number
    successes: number
    rejects: number
    fires: number
    timeouts: number
    cacheHits: number
    cacheMisses: number
    semaphoreRejections: number
    latencyMean: number
    percentiles: Record<string, number>
    latencyTimes: Array<number>
  }

  export type Event =
    | "fire"
    | "success"
    | "failure"
    | "timeout"
    | "reject"
    | "fallback"
    | "open"
    | "halfOpen"
    | "close"
    | "shutdown"
    | "semaphoreLocked"
    | "healthCheckFailed"
    | "cacheHit"
    | "cacheMiss"

  export default class CircuitBreaker<A extends Array<unknown>, R> {
    constructor(action: (...args: A) => Promise<R>, options?: Options)
    fire(...args: A): Promise<R>
    fallback(fallback: (...argsAndError: Array<any>) => unknown): this
    on(event: Event, listener: (...args: Array<any>) => void): this
    open(): void
    close(): void
    shutdown(): void
    enable(): void
    disable(): void
    getSignal(): AbortSignal | undefined
    readonly name: string
    readonly opened: boolean
    readonly closed: boolean
    readonly halfOpen: boolean
    readonly pendingClose: boolean
    readonly isShutdown: boolean
    readonly enabled: boolean
    readonly warmUp: boolean
    readonly volumeThreshold: number
    readonly stats: Stats
    static isOurError(error: unknown): boolean
  }
}
