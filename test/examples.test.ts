/**
 * The examples are the documentation's evidence. Every program under
 * examples/<primitive>/ runs (its node:assert checks are the claims of
 * docs/<primitive>.md), both in-process against the sources and as a script
 * against the built package; every code block of docs/*.md that names a file
 * is that file, verbatim; the README examples print what they say; and the
 * demo shows the protection helping.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile, execFileSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const read = (path: string) => readFileSync(join(root, path), "utf8")
const listDir = (dir: string) => readdirSync(join(root, dir), { withFileTypes: true })

/**
 * One directory per primitive (examples/bulkhead, ...), each documented by docs/<directory>.md.
 * examples/demo is not one of them: it holds the modules of the demo (examples/demo.ts), which are
 * not standalone example programs (no `program` to run) and are documented, not copied, by
 * docs/demo.md; the demo is checked by the demo tests below and by test/demo/report.test.ts.
 */
const exampleDirs = listDir("examples")
  .filter((entry) => entry.isDirectory() && entry.name !== "demo")
  .map((entry) => entry.name)
  .sort()
const examplesOf = (dir: string) =>
  listDir(`examples/${dir}`)
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => `examples/${dir}/${entry.name}`)
    .sort()
const allExamples = exampleDirs.flatMap(examplesOf)
const docs = listDir("docs").filter((entry) => entry.name.endsWith(".md")).map((entry) => `docs/${entry.name}`)

/** Runs `node ...args` in the repository, with the Node that runs the tests. */
const node = (args: ReadonlyArray<string>, timeout = 30_000) =>
  new Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }>((resolve) => {
    execFile(process.execPath, args, { cwd: root, timeout }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr }))
  })

/** The newest modification time of the files under `dir`. */
const newest = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce((latest, entry) => {
    const path = join(dir, entry.name)
    return Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs)
  }, 0)

/** Scripts run by `node` import the built package: build it when it is missing or older than its sources. */
const ensureBuilt = () => {
  const dist = join(root, "packages", "core", "dist", "index.js")
  if (!existsSync(dist) || statSync(dist).mtimeMs < newest(join(root, "packages", "core", "src"))) {
    execFileSync("npm", ["run", "-s", "build"], { cwd: root, stdio: "ignore" })
  }
}

/** Code blocks of a Markdown file that name their source file on the line just above the fence. */
const namedBlocks = (markdown: string) =>
  Array.from(
    markdown.matchAll(/^\[`?([\w./-]+\.ts)`?\]\(([^)]+)\)\n```ts\n([\s\S]*?)^```$/gm),
    ([, file, link, code]) => ({ file, link, code })
  )

describe("every example program runs and its assertions hold", () => {
  it("examples/bulkhead has examples", () => assert.isAbove(examplesOf("bulkhead").length, 0))
  for (const file of allExamples) {
    it.live(file, () =>
      Effect.promise(() => import(pathToFileURL(join(root, file)).href)).pipe(
        Effect.flatMap((module: { readonly program: Effect.Effect<unknown, unknown> }) => module.program)
      ))
  }
})

describe("the docs show the examples exactly as they are", () => {
  for (const dir of exampleDirs) {
    it(`docs/${dir}.md shows every file of examples/${dir}`, () => {
      const shown = namedBlocks(read(`docs/${dir}.md`)).map((block) => block.file)
      assert.deepStrictEqual([...new Set(shown)].sort(), examplesOf(dir))
    })
  }
  for (const doc of docs) {
    for (const block of namedBlocks(read(doc))) {
      it(`${doc}: ${block.file} is copied verbatim and linked`, () => {
        assert.strictEqual(block.link, `../${block.file}`)
        assert.strictEqual(block.code, read(block.file))
      })
    }
  }
})

describe("the examples run as scripts against the built package", () => {
  beforeAll(ensureBuilt, 120_000)

  it("every example file exits 0 when run with node", async () => {
    const pending = [...allExamples]
    const failures: Array<string> = []
    const worker = async () => {
      for (let file = pending.shift(); file !== undefined; file = pending.shift()) {
        const run = await node([file])
        if (run.code !== 0) failures.push(`${file} exited with ${run.code}:\n${run.stderr}`)
      }
    }
    await Promise.all(Array.from({ length: 4 }, worker))
    assert.deepStrictEqual(failures, [])
  })

  it("every README example runs and prints what its comments say", async () => {
    const examples = Array.from(read("README.md").matchAll(/^```ts\n([\s\S]*?)^```$/gm), ([, code]) => code)
    assert.isAbove(examples.length, 0)
    // Written inside the repository (in the git-ignored .cache) so that their imports resolve.
    mkdirSync(join(root, ".cache"), { recursive: true })
    for (const [i, example] of examples.entries()) {
      const file = `.cache/readme-example-${i + 1}.ts`
      writeFileSync(join(root, file), example)
      const run = await node([file])
      assert.strictEqual(run.code, 0, `README example ${i + 1}:\n${run.stderr}`)
      const printed = Array.from(example.matchAll(/\/\/ prints: (.*)$/gm), ([, line]) => line)
      assert.isAbove(printed.length, 0, `README example ${i + 1} says nothing about its output`)
      assert.deepStrictEqual(run.stdout.trim().split("\n"), printed, `README example ${i + 1}`)
    }
  })

  it("npm run demo -- --fast: the numbers show the protection helping, and the report is written", async () => {
    const report = join(root, ".cache", "storm-report-examples-test.html")
    rmSync(report, { force: true })
    const run = await node(["examples/demo.ts", "--fast", `--report=${report}`], 60_000)
    assert.strictEqual(run.code, 0, `${run.stdout}\n${run.stderr}`)
    assert.include(run.stdout, "The protection helped")
    assert.notInclude(run.stdout, "FAIL")
    assert.include(run.stdout, "Report: .cache/storm-report-examples-test.html")
    assert.match(readFileSync(report, "utf8"), /^<!doctype html>/)
  })

  it("the demo refuses arguments it does not know", async () => {
    const run = await node(["examples/demo.ts", "--sead=3"])
    assert.strictEqual(run.code, 2)
    assert.include(run.stderr, "usage: node examples/demo.ts")
  })
})
