import { readFileSync, readlinkSync } from "node:fs"
import { hostname } from "node:os"

/**
 * Who owns a row: a process, told apart from a later process that reuses its
 * pid.
 *
 * - `pid`: the process id.
 * - `start`: on Linux, the process's start time in clock ticks since boot
 *   (field 22 of `/proc/<pid>/stat`): a pid reused by a later process has a
 *   later start time. Elsewhere `""`: pids alone, see {@link isGone}.
 * - `scope`: where `pid` means something. On Linux the boot id and the pid
 *   namespace (two containers sharing a volume number their processes
 *   independently, and a reboot starts the numbering again); elsewhere the
 *   host name. A process can only judge owners of its own scope.
 *
 * @internal
 */
export interface ProcessIdentity {
  readonly pid: number
  readonly start: string
  readonly scope: string
}

const readText = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8")
  } catch {
    return undefined
  }
}

/**
 * Fields 3 and on of `/proc/<pid>/stat`. Field 2 is the command name in
 * parentheses, which may itself hold spaces and parentheses: the fields
 * that follow start after the *last* `)`.
 */
const statFields = (pid: number): ReadonlyArray<string> | undefined => {
  const stat = readText(`/proc/${pid}/stat`)
  if (stat === undefined) return undefined
  const close = stat.lastIndexOf(")")
  return close < 0 ? undefined : stat.slice(close + 2).split(" ")
}

/** Field 3 (the state) is index 0 of `statFields`, so field 22 (the start time) is index 19. */
const STATE = 0
const START_TIME = 19

const linuxScope = (): string | undefined => {
  const boot = readText("/proc/sys/kernel/random/boot_id")?.trim()
  let namespace: string
  try {
    namespace = readlinkSync("/proc/self/ns/pid")
  } catch {
    return undefined
  }
  return boot === undefined || boot.length === 0 ? undefined : `linux:${boot}:${namespace}`
}

const computeSelf = (): ProcessIdentity => {
  if (process.platform === "linux") {
    const scope = linuxScope()
    const start = statFields(process.pid)?.[START_TIME]
    if (scope !== undefined && start !== undefined && /^\d+$/.test(start)) return { pid: process.pid, start, scope }
  }
  // No /proc (macOS, Windows, a locked-down container): pids only.
  return { pid: process.pid, start: "", scope: `host:${hostname()}` }
}

let cached: ProcessIdentity | undefined

/**
 * This process. Computed once: the pid and start time of a process never
 * change.
 *
 * @internal
 */
export const self = (): ProcessIdentity => (cached ??= computeSelf())

/**
 * Is the process `owner` certainly gone? `false` whenever that cannot be
 * known for sure, so that a caller only ever reclaims what a dead process
 * left behind:
 *
 * - an owner of another scope (another container, another boot, another
 *   host) is never judged;
 * - no process with that pid: gone;
 * - on Linux, a process with that pid but another start time (the pid was
 *   reused), or a zombie (exited, not yet reaped by its parent): gone;
 * - without start times (not Linux), a live process with that pid may be a
 *   stranger that reused it: it counts as the owner.
 *
 * @internal
 */
export const isGone = (owner: ProcessIdentity): boolean => {
  const me = self()
  if (owner.scope !== me.scope) return false
  if (owner.pid === me.pid) return owner.start !== "" && me.start !== "" && owner.start !== me.start
  try {
    // Signal 0 checks existence and permission without signalling anything.
    process.kill(owner.pid, 0)
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === "ESRCH"
  }
  if (owner.start === "" || me.start === "") return false
  const fields = statFields(owner.pid)
  // Gone between the two checks.
  if (fields === undefined) return true
  const state = fields[STATE]
  if (state === "Z" || state === "X") return true
  return fields[START_TIME] !== owner.start
}
