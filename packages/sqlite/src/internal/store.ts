import { StoreError } from "@bulwark/core"
import { Effect, type Scope } from "effect"
import { acquire, type Database, DatabaseFailure, defaultFile, release } from "./database.ts"

/**
 * The shared connection to `file` (default: the user's cache directory) for
 * as long as the current scope: the connection closes when the last store
 * of this process using that file is closed.
 *
 * @internal
 */
export const acquireDatabase = (file: string | undefined): Effect.Effect<Database, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => acquire(file ?? defaultFile())),
    (database) => Effect.sync(() => release(database))
  )

/**
 * Runs one synchronous database step of `operation` as an `Effect`: a
 * {@link DatabaseFailure} becomes the toolkit's `StoreError` (`store:
 * "sqlite"`); anything else thrown is a defect.
 *
 * @internal
 */
export const attempt = <A>(operation: string, f: () => A): Effect.Effect<A, StoreError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f())
    } catch (error) {
      if (!(error instanceof DatabaseFailure)) throw error
      return Effect.fail(new StoreError({ store: "sqlite", operation, reason: error.reason, message: error.message }))
    }
  })
