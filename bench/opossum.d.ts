// The part of opossum's API the benchmark uses (the package ships no types).
declare module "opossum" {
  export default class CircuitBreaker<A extends Array<unknown>, R> {
    constructor(action: (...args: A) => Promise<R>, options?: Record<string, unknown>)
    fire(...args: A): Promise<R>
    open(): void
    shutdown(): void
  }
}
