/**
 * Forks worker processes of test/redis/workers/ (each one a separate OS
 * process running the code under test from its sources, see
 * test/redis/workers/register.ts), waits until every one is ready, sends
 * "go" to all at once so that they race, and collects their reports.
 *
 * A worker talks to the test over IPC: `{ type: "ready" }` once connected and
 * warmed up, then `{ type: "done", report }`. A worker that has not exited
 * within `limitMs` is killed by its pid and the run fails: nothing may hang.
 */
import { fork } from "node:child_process"
import { fileURLToPath } from "node:url"

const workers = new URL("../redis/workers/", import.meta.url)
const register = fileURLToPath(new URL("register.ts", workers))
const compileCache = fileURLToPath(new URL("../../.cache/node-compile-cache", import.meta.url))

type Message<Report> =
  | { readonly type: "ready" }
  | { readonly type: "done"; readonly report: Report }
  | { readonly type: "event"; readonly event: unknown }

export const runWorkers = async <Report>(options: {
  /** A file of test/redis/workers/. */
  readonly worker: string
  readonly count: number
  readonly env: Record<string, string>
  readonly limitMs: number
  /** Runs once every worker is ready, before they are told to go. */
  readonly beforeGo?: () => Promise<void>
  /** Runs once every worker has been told to go. */
  readonly whileRunning?: () => Promise<void>
  /** Arguments for each worker, by index. */
  readonly args?: (index: number) => ReadonlyArray<string>
}): Promise<{ readonly reports: ReadonlyArray<Report>; readonly events: ReadonlyArray<unknown> }> => {
  const reports: Array<Report> = []
  const events: Array<unknown> = []
  const stderr: Array<string> = []
  const children = Array.from({ length: options.count }, (_, index) =>
    fork(fileURLToPath(new URL(options.worker, workers)), [...(options.args?.(index) ?? [])], {
      execArgv: ["--import", register],
      // Node's compile cache keeps the type-stripped sources between runs: workers start in about half the time.
      env: { ...process.env, NODE_COMPILE_CACHE: compileCache, ...options.env },
      stdio: ["ignore", "ignore", "pipe", "ipc"]
    }))
  const exits = children.map((child) =>
    new Promise<number | null>((resolve) => {
      child.stderr?.on("data", (chunk) => stderr.push(String(chunk)))
      child.on("message", (message: Message<Report>) => {
        if (message.type === "done") reports.push(message.report)
        if (message.type === "event") events.push(message.event)
      })
      child.once("exit", (code) => resolve(code))
    })
  )
  const ready = children.map((child) =>
    new Promise<void>((resolve) => child.on("message", (m: Message<Report>) => m.type === "ready" && resolve()))
  )
  const limit = setTimeout(() => {
    for (const child of children) if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL")
  }, options.limitMs)
  try {
    await Promise.race([
      Promise.all(ready),
      Promise.all(exits).then(() => Promise.reject(new Error(`workers exited before they were ready:\n${stderr.join("")}`)))
    ])
    await options.beforeGo?.()
    for (const child of children) child.send("go")
    await options.whileRunning?.()
    const codes = await Promise.all(exits)
    if (codes.some((code) => code !== 0)) throw new Error(`workers failed or hung (exit codes ${codes.join(", ")}):\n${stderr.join("")}`)
  } finally {
    clearTimeout(limit)
  }
  return { reports, events }
}
