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
 * Runs one synchronous database step as an `Effect`: a {@link DatabaseFailure}
 * becomes the store's error; anything else thrown is a defect.
 *
 * @internal
 */
export const attempt = <A, E>(f: () => A, onFailure: (failure: DatabaseFailure) => E): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f())
    } catch (error) {
      if (error instanceof DatabaseFailure) return Effect.fail(onFailure(error))
      throw error
    }
  })
