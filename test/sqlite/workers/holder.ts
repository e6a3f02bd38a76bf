/**
 * A worker of test/sqlite: another process that holds the database file's
 * write lock. It opens `argv[2]` with node:sqlite directly (not through
 * Bulwark), runs `BEGIN IMMEDIATE`, reports "locked", and commits and exits
 * when the test sends "release" (or is killed).
 */
import { DatabaseSync } from "node:sqlite"

const db = new DatabaseSync(process.argv[2]!)
db.exec("BEGIN IMMEDIATE")
process.send!({ type: "locked" })
process.on("message", (message) => {
  if (message !== "release") return
  db.exec("COMMIT")
  db.close()
  process.exit(0)
})
