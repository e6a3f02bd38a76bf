/**
 * What the SQLite tests share: a temporary directory of real database files
 * (removed when the test file is done), and worker processes forked with the
 * sources of the packages (test/sqlite/workers/register.ts), each killed if it
 * has not exited within a limit: nothing may hang.
 */
import { type ChildProcess, fork } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

/** A fresh temporary directory and a counter of file names in it; `cleanup` removes it all. */
export const tempFiles = () => {
  const dir = mkdtempSync(join(tmpdir(), "bulwark-sqlite-"))
  let files = 0
  return {
    dir,
    /** A path not used before in this directory. */
    next: (name = "db") => join(dir, `${name}-${++files}.sqlite`),
    cleanup: () => rmSync(dir, { recursive: true, force: true })
  }
}

const register = fileURLToPath(new URL("./workers/register.ts", import.meta.url))
const compileCache = fileURLToPath(new URL("../../.cache/node-compile-cache", import.meta.url))

export interface Worker<M> {
  readonly child: ChildProcess
  readonly pid: number
  /** Messages received so far, in order. */
  readonly messages: Array<M>
  /** Resolves with the first message that satisfies `p` (already received or to come). */
  readonly next: (p: (m: M) => boolean) => Promise<M>
  readonly send: (message: unknown) => void
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  readonly exited: Promise<number | string>
  readonly stderr: () => string
  readonly kill: (signal?: NodeJS.Signals) => void
}

/**
 * Forks `test/sqlite/workers/<file>` with `args` and `env`. The worker is
 * killed with SIGKILL after `limitMs` if it is still running.
 */
export const forkWorker = <M>(
  file: string,
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  limitMs: number
): Worker<M> => {
  const child = fork(fileURLToPath(new URL(`./workers/${file}`, import.meta.url)), [...args], {
    execArgv: ["--import", register],
    // Node's compile cache keeps the type-stripped sources between runs: workers start in about half the time.
    env: { ...process.env, NODE_COMPILE_CACHE: compileCache, ...env },
    stdio: ["ignore", "ignore", "pipe", "ipc"]
  })
  const messages: Array<M> = []
  const waiting: Array<{ readonly p: (m: M) => boolean; readonly resolve: (m: M) => void }> = []
  let stderr = ""
  child.stderr?.on("data", (chunk) => (stderr += String(chunk)))
  child.on("message", (m: M) => {
    messages.push(m)
    for (const w of [...waiting]) {
      if (w.p(m)) {
        waiting.splice(waiting.indexOf(w), 1)
        w.resolve(m)
      }
    }
  })
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => {
      clearTimeout(limit)
      resolve(code ?? signal ?? "unknown")
    })
  )
  const limit = setTimeout(() => child.exitCode === null && child.kill("SIGKILL"), limitMs)
  return {
    child,
    pid: child.pid!,
    messages,
    next: (p) => {
      const found = messages.find(p)
      if (found !== undefined) return Promise.resolve(found)
      return new Promise<M>((resolve, reject) => {
        waiting.push({ p, resolve })
        exited.then((code) => reject(new Error(`worker exited (${code}) before the expected message:\n${stderr}`)))
      })
    },
    send: (message) => child.send(message as never),
    exited,
    stderr: () => stderr,
    kill: (signal = "SIGKILL") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    }
  }
}
