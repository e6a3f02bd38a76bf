/**
 * A real redis-server for the tests that need one: started on a free
 * loopback port of its own (never 6379, never a system service), with no
 * persistence, and stopped by its pid. Tests can stop and restart it to
 * check what an outage does. Redis is never mocked.
 *
 * Each test file starts its own server, so files running in parallel never
 * see each other's keys or outages.
 *
 * Without redis-server the Redis tests are skipped locally and fail under CI
 * (CI=true), where .ci/run installs it.
 */
import { describe, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createConnection, createServer } from "node:net"
import { delimiter, join } from "node:path"

const underCI = process.env.CI === "true" || process.env.CI === "1"

const findRedisServer = (): string | undefined => {
  if (process.env.REDIS_SERVER !== undefined && existsSync(process.env.REDIS_SERVER)) return process.env.REDIS_SERVER
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/bin", "/usr/sbin", "/usr/local/bin"]
  return dirs.filter((dir) => dir.length > 0).map((dir) => join(dir, "redis-server")).find((path) => existsSync(path))
}

/** The redis-server binary, or `undefined` when there is none. */
export const redisServerPath: string | undefined = findRedisServer()

/**
 * `describe`, or, without redis-server, a skipped one (locally) or a failing
 * test that says what to install (under CI).
 */
export const describeRedis = (name: string, body: () => void): void => {
  if (redisServerPath !== undefined) {
    describe(name, body)
  } else if (underCI) {
    describe(name, () => {
      it("needs redis-server", () => {
        throw new Error(
          "redis-server is missing and CI=true: install Debian's redis-server package " +
            "(apt-get install -y redis-server; .ci/run does it when it runs as root), or set REDIS_SERVER to its path"
        )
      })
    })
  } else {
    describe.skip(`${name} (redis-server not found)`, body)
  }
}

/** A port nobody listens on now, on 127.0.0.1. */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port")))
    })
  })

/** Sends PING over a plain socket: true when the server answers +PONG. */
export const ping = (port: number, timeoutMs = 500): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once("error", () => done(false))
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")))
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Every server this process started and has not stopped: killed by pid if
 * the process exits normally first (the watchdog shell covers the rest).
 */
const running = new Set<Launched>()
process.once("exit", () => {
  for (const server of running) signalPid(server.pid, "SIGKILL")
})

/**
 * A redis-server started by this test process.
 */
export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** The pid of the running server, `undefined` while stopped. */
  readonly pid: () => number | undefined
  /** Stops the server by its pid: `SIGTERM` (a clean shutdown) or `SIGKILL` (a crash). */
  readonly stop: (signal?: "SIGTERM" | "SIGKILL") => Promise<void>
  /** Starts it again on the same port (empty: nothing is persisted). */
  readonly restart: () => Promise<void>
}

/**
 * Runs redis-server under a small shell that prints its pid, exits when it
 * exits, and kills it if this test process goes away without stopping it
 * (vitest ends its workers with a signal, and a file that fails to load
 * never reaches its `afterAll`): a server never outlives its test run.
 */
const watchdog = `"$0" "$@" & server=$!
echo "$server"
( while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; kill -9 "$server" 2>/dev/null ) &
guard=$!
wait "$server"
status=$?
kill "$guard" 2>/dev/null
exit $status`

interface Launched {
  /** The shell: it exits when the server does. */
  readonly shell: ChildProcess
  /** The server's own pid, the one that is signalled. */
  readonly pid: number
}

const launch = async (port: number): Promise<Launched> => {
  const shell = spawn(
    "sh",
    [
      "-c",
      watchdog,
      redisServerPath!,
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--daemonize",
      "no"
    ],
    { stdio: ["ignore", "pipe", "pipe"] }
  )
  let output = ""
  let pid: number | undefined
  shell.stdout?.on("data", (chunk) => {
    output += chunk
    pid ??= Number(/^(\d+)\n/.exec(output)?.[1]) || undefined
  })
  shell.stderr?.on("data", (chunk) => (output += chunk))
  let exited = false
  shell.once("exit", () => (exited = true))
  const deadline = Date.now() + 5000
  while (Date.now() < deadline && !exited) {
    if (pid !== undefined && await ping(port)) {
      const launched = { shell, pid }
      running.add(launched)
      return launched
    }
    await sleep(20)
  }
  if (pid !== undefined) await kill({ shell, pid }, "SIGKILL")
  else shell.kill("SIGKILL")
  throw new Error(`redis-server did not answer PING on port ${port}:\n${output}`)
}

/** Signals the server by its pid and waits until it has exited (its shell exits with it). */
const kill = (server: Launched, signal: "SIGTERM" | "SIGKILL"): Promise<void> =>
  new Promise((resolve) => {
    running.delete(server)
    const { pid, shell } = server
    if (shell.exitCode !== null || shell.signalCode !== null) return resolve()
    const timer = setTimeout(() => signalPid(pid, "SIGKILL"), 5000)
    shell.once("exit", () => {
      clearTimeout(timer)
      resolve()
    })
    signalPid(pid, signal)
  })

const signalPid = (pid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(pid, signal)
  } catch {
    // Already gone.
  }
}

/**
 * Starts a redis-server on a free loopback port and waits until it answers
 * PING. Stop it with `stop()` (an `afterAll`).
 */
export const startRedis = async (): Promise<RedisServer> => {
  // Another process may take the free port before redis-server binds it: try a few.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    let server: Launched | undefined
    try {
      server = await launch(port)
    } catch (error) {
      if (attempt >= 3) throw error
      continue
    }
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      pid: () => server?.pid,
      stop: async (signal = "SIGTERM") => {
        if (server === undefined) return
        const stopping = server
        server = undefined
        await kill(stopping, signal)
      },
      restart: async () => {
        if (server !== undefined) await kill(server, "SIGTERM")
        server = undefined
        server = await launch(port)
      }
    }
  }
}

/**
 * Watches every command the server runs (`MONITOR` over a plain socket of
 * its own): `stop()` ends the watch and returns the commands clients sent
 * (upper-cased names, in order) and how many ran inside scripts. The
 * monitoring connection's own commands are not in the list.
 */
export const monitor = async (port: number): Promise<{
  readonly stop: () => Promise<{ readonly fromClients: ReadonlyArray<string>; readonly fromScripts: number }>
}> => {
  const socket = createConnection({ host: "127.0.0.1", port })
  let output = ""
  socket.on("data", (chunk) => (output += chunk))
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject)
    socket.once("connect", () => socket.write("MONITOR\r\n"))
    const waitForOk = () => (output.startsWith("+OK") ? resolve() : setTimeout(waitForOk, 2))
    waitForOk()
  })
  return {
    stop: async () => {
      // Lets the last commands reach the monitor before it is closed.
      await sleep(50)
      socket.destroy()
      const lines = output.split("\r\n").filter((line) => line.startsWith("+") && line !== "+OK")
      const fromClients: Array<string> = []
      let fromScripts = 0
      for (const line of lines) {
        // +1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "..." / +1700000000.123456 [0 lua] "TIME"
        const match = /^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(line)
        if (match === null) continue
        if (match[1] === "lua") fromScripts++
        else fromClients.push(match[2].toUpperCase())
      }
      return { fromClients, fromScripts }
    }
  }
}
