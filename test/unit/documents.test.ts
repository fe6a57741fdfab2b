import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { documentsFromFiles, listLocalFiles } from "../../shared/adapters/file-documents.ts";
import {
  type CorpusBody,
  type SkippedInput,
  corpusFormat,
  markdownTitle,
  parseCorpusObject,
} from "../../shared/core/documents.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import type { SourceDocument } from "../../shared/core/types.ts";

async function parse(key: string, body: CorpusBody, opts: { idPrefix?: string; corpusPrefix?: string } = {}) {
  const skipped: SkippedInput[] = [];
  const docs: SourceDocument[] = [];
  for await (const d of parseCorpusObject(key, body, { ...opts, onSkip: (s) => skipped.push(s) })) docs.push(d);
  return { docs, skipped };
}

/** Splits bytes into chunks of `size` to exercise lines and UTF-8 sequences cut across chunk borders. */
async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

const enc = (s: string) => new TextEncoder().encode(s);

describe("corpusFormat", () => {
  it.each([
    ["corpus/a.jsonl", "jsonl"],
    ["a.NDJSON", "jsonl"],
    ["x/y/z.json", "json"],
    ["README.md", "markdown"],
    ["notes.Markdown", "markdown"],
    ["a.txt", "text"],
    ["a.pdf", null],
    ["noext", null],
    [".hidden", null],
    ["dir.jsonl/file", null],
  ])("%s → %s", (key, fmt) => expect(corpusFormat(key)).toBe(fmt));
});

describe("parseCorpusObject: JSONL", () => {
  it("reads {id,text,source,metadata} rows and defaults source to the key", async () => {
    const body = [
      JSON.stringify({ id: "a", text: "alpha", source: "s3://x/a", metadata: { lang: "en" } }),
      JSON.stringify({ id: "b", text: "beta" }),
    ].join("\n");
    const { docs, skipped } = await parse("corpus/docs.jsonl", body);
    expect(skipped).toEqual([]);
    expect(docs).toEqual([
      { id: "a", text: "alpha", source: "s3://x/a", metadata: { lang: "en" } },
      { id: "b", text: "beta", source: "corpus/docs.jsonl" },
    ]);
  });

  it("reads BEIR rows: title + blank line + text, title kept in metadata", async () => {
    const body = [
      JSON.stringify({ _id: "1", title: "Wings", text: "lift and drag" }),
      JSON.stringify({ _id: "2", title: "", text: "no title" }),
      JSON.stringify({ _id: "3", title: "only a title", text: "" }),
      JSON.stringify({ _id: "4", title: "T", text: "x", metadata: { year: 1960 } }),
    ].join("\n");
    const { docs, skipped } = await parse("beir.jsonl", body);
    expect(skipped).toEqual([]);
    expect(docs.map((d) => d.text)).toEqual(["Wings\n\nlift and drag", "no title", "only a title", "T\n\nx"]);
    expect(docs[0].metadata).toEqual({ title: "Wings" });
    expect(docs[1].metadata).toBeUndefined();
    expect(docs[3].metadata).toEqual({ year: 1960, title: "T" });
  });

  it("reports malformed and invalid lines with their 1-based line numbers and goes on", async () => {
    const lines = [
      JSON.stringify({ id: "ok1", text: "fine" }), // 1
      "{not json", // 2
      "", // 3: blank lines are not errors
      JSON.stringify({ id: 7, text: "numeric id" }), // 4
      JSON.stringify({ id: "e", text: "   " }), // 5
      JSON.stringify({ id: "m" }), // 6
      JSON.stringify({ text: "no id" }), // 7
      JSON.stringify(["an", "array"]), // 8
      JSON.stringify({ id: "md", text: "x", metadata: "nope" }), // 9
      JSON.stringify({ id: "t", text: 5 }), // 10
      JSON.stringify({ id: "", text: "empty id" }), // 11
      JSON.stringify({ id: "ok2", text: "also fine" }), // 12
    ];
    const { docs, skipped } = await parse("c.jsonl", lines.join("\n"));
    expect(docs.map((d) => d.id)).toEqual(["ok1", "ok2"]);
    expect(skipped.map((s) => s.line)).toEqual([2, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(skipped.every((s) => s.key === "c.jsonl")).toBe(true);
    const reason = (line: number) => skipped.find((s) => s.line === line)!.reason;
    expect(reason(2)).toMatch(/malformed JSON/);
    expect(reason(4)).toMatch(/"id" must be a string/);
    expect(reason(5)).toMatch(/empty "text"/);
    expect(reason(6)).toMatch(/empty "text"/);
    expect(reason(7)).toMatch(/missing "id"/);
    expect(reason(8)).toMatch(/JSON object/);
    expect(reason(9)).toMatch(/metadata/);
    expect(reason(10)).toMatch(/"text" must be a string/);
    expect(reason(11)).toMatch(/"id" is empty/);
  });

  it("keeps the last of duplicate ids and reports the earlier line", async () => {
    const body = [
      JSON.stringify({ id: "a", text: "first a" }),
      JSON.stringify({ id: "b", text: "b" }),
      JSON.stringify({ id: "a", text: "second a" }),
      JSON.stringify({ id: "a", text: "third a" }),
    ].join("\n");
    const { docs, skipped } = await parse("d.jsonl", body);
    expect(docs).toEqual([
      { id: "b", text: "b", source: "d.jsonl" },
      { id: "a", text: "third a", source: "d.jsonl" },
    ]);
    expect(skipped).toEqual([
      { key: "d.jsonl", line: 1, reason: 'duplicate id "a": replaced by line 3' },
      { key: "d.jsonl", line: 3, reason: 'duplicate id "a": replaced by line 4' },
    ]);
  });

  it("handles a BOM, CRLF line ends, a missing final newline and trailing blank lines", async () => {
    const body = `\uFEFF${JSON.stringify({ id: "a", text: "x" })}\r\n${JSON.stringify({ id: "b", text: "y\r\nz" })}\r\n\r\n`;
    const { docs, skipped } = await parse("bom.jsonl", enc(body));
    expect(skipped).toEqual([]);
    expect(docs.map((d) => [d.id, d.text])).toEqual([
      ["a", "x"],
      ["b", "y\r\nz"],
    ]);
  });

  it("reports an empty file once and yields nothing", async () => {
    expect(await parse("e.jsonl", "")).toEqual({ docs: [], skipped: [{ key: "e.jsonl", reason: "empty file" }] });
    expect((await parse("e.ndjson", "\n \n")).skipped).toEqual([{ key: "e.ndjson", reason: "empty file" }]);
  });

  it("streams: the same documents whatever the chunk size, with multi-byte characters cut across chunks", async () => {
    const rows = [
      { id: "ü-1", text: "Grüße aus Köln — naïve café" },
      { id: "emoji", text: "rocket 🚀 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢" },
      { id: "cjk", text: "日本語のテキスト、中文文本" },
    ];
    const bytes = enc(rows.map((r) => JSON.stringify(r)).join("\n"));
    for (const size of [1, 2, 3, 7, 64, 100000]) {
      const { docs, skipped } = await parse("u.jsonl", chunked(bytes, size));
      expect(skipped).toEqual([]);
      expect(docs.map((d) => ({ id: d.id, text: d.text }))).toEqual(rows);
    }
  });

  it("reads streams whose producer reuses one buffer between chunks", async () => {
    const bytes = enc([JSON.stringify({ id: "a", text: "one" }), JSON.stringify({ id: "b", text: "two" })].join("\n"));
    async function* reusing(): AsyncGenerator<Uint8Array> {
      const buf = new Uint8Array(5);
      for (let i = 0; i < bytes.length; i += 5) {
        const n = Math.min(5, bytes.length - i);
        buf.set(bytes.subarray(i, i + n));
        yield buf.subarray(0, n);
      }
    }
    const { docs } = await parse("r.jsonl", reusing());
    expect(docs.map((d) => d.text)).toEqual(["one", "two"]);
  });

  it("reports a line that is not valid UTF-8", async () => {
    const good = enc(JSON.stringify({ id: "a", text: "ok" }));
    const bad = new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]);
    const body = new Uint8Array([...bad, 0x0a, ...good]);
    const { docs, skipped } = await parse("bad.jsonl", body);
    expect(docs.map((d) => d.id)).toEqual(["a"]);
    expect(skipped).toEqual([{ key: "bad.jsonl", line: 1, reason: "line is not valid UTF-8" }]);
  });

  it("applies idPrefix", async () => {
    const { docs } = await parse("p.jsonl", JSON.stringify({ id: "1", text: "x" }), { idPrefix: "beir:" });
    expect(docs[0].id).toBe("beir:1");
  });
});

describe("parseCorpusObject: JSON", () => {
  it("reads an array of rows, reporting bad items by index and keeping the last duplicate", async () => {
    const body = JSON.stringify([
      { id: "a", text: "one" },
      { id: "b", text: "" },
      { _id: "c", title: "C", text: "three" },
      { id: "a", text: "one again" },
      42,
    ]);
    const { docs, skipped } = await parse("arr.json", body);
    expect(docs.map((d) => [d.id, d.text])).toEqual([
      ["c", "C\n\nthree"],
      ["a", "one again"],
    ]);
    expect(skipped.map((s) => s.reason)).toEqual([
      'item 1: missing or empty "text"',
      'item 0: duplicate id "a": replaced by item 3',
      "item 4: expected a JSON object",
    ]);
  });

  it("reads a single object, with a BOM", async () => {
    const { docs } = await parse("one.json", enc(`\uFEFF${JSON.stringify({ id: "x", text: "solo" })}`));
    expect(docs).toEqual([{ id: "x", text: "solo", source: "one.json" }]);
  });

  it("reads a streamed body", async () => {
    const { docs } = await parse("s.json", chunked(enc(JSON.stringify([{ id: "é", text: "ünïcödé" }])), 3));
    expect(docs[0]).toMatchObject({ id: "é", text: "ünïcödé" });
  });

  it("reports malformed and empty files", async () => {
    expect((await parse("bad.json", "[{")).skipped[0].reason).toMatch(/^malformed JSON/);
    expect((await parse("empty.json", "  \n")).skipped).toEqual([{ key: "empty.json", reason: "empty file" }]);
  });
});

describe("parseCorpusObject: Markdown and text", () => {
  it("makes one document: id without the corpus prefix, source = key, title from the first # heading", async () => {
    const md = "---\nintro\n---\n\n```\n# not a heading (code)\n```\n## Sub\n# Real Title #\n\nBody text.\n# Second\n";
    const { docs, skipped } = await parse("corpus/guides/setup.md", md, { corpusPrefix: "corpus/" });
    expect(skipped).toEqual([]);
    expect(docs).toEqual([
      { id: "guides/setup.md", text: md, source: "corpus/guides/setup.md", metadata: { title: "Real Title" } },
    ]);
  });

  it("normalises CRLF so offsets refer to LF text, and strips a BOM", async () => {
    const { docs } = await parse("a.markdown", enc("\uFEFF# Título\r\n\r\nLínea uno\r\nLínea dos\r\n"));
    expect(docs[0].text).toBe("# Título\n\nLínea uno\nLínea dos\n");
    expect(docs[0].metadata).toEqual({ title: "Título" });
  });

  it("treats .txt as plain text without a title", async () => {
    const { docs } = await parse("corpus/notes.txt", "# looks like a heading\nbut is text", {
      corpusPrefix: "corpus/",
      idPrefix: "n:",
    });
    expect(docs).toEqual([
      { id: "n:notes.txt", text: "# looks like a heading\nbut is text", source: "corpus/notes.txt" },
    ]);
  });

  it("keeps the key as id when it lies outside the corpus prefix", async () => {
    const { docs } = await parse("other/x.txt", "hello", { corpusPrefix: "corpus/" });
    expect(docs[0].id).toBe("other/x.txt");
  });

  it("reports empty, whitespace-only and non-UTF-8 files", async () => {
    expect((await parse("e.md", "")).skipped).toEqual([{ key: "e.md", reason: "empty file" }]);
    expect((await parse("w.txt", " \r\n\t\n")).skipped).toEqual([{ key: "w.txt", reason: "empty file" }]);
    expect((await parse("b.txt", new Uint8Array([0xc3, 0x28]))).skipped).toEqual([
      { key: "b.txt", reason: "file is not valid UTF-8" },
    ]);
  });
});

describe("parseCorpusObject: other types", () => {
  it("reports unsupported file types and yields nothing", async () => {
    expect(await parse("corpus/paper.pdf", "%PDF")).toEqual({
      docs: [],
      skipped: [{ key: "corpus/paper.pdf", reason: expect.stringMatching(/^unsupported file type \.pdf/) }],
    });
    expect((await parse("corpus/README", "x")).skipped[0].reason).toMatch(/unsupported file type \(no extension\)/);
  });
});

describe("markdownTitle", () => {
  it.each([
    ["# A", "A"],
    ["   # Indented ok", "Indented ok"],
    ["    # four spaces is code", undefined],
    ["#NoSpace", undefined],
    ["## only h2", undefined],
    ["~~~\n# fenced\n~~~\n# After", "After"],
  ])("%j → %j", (md, title) => expect(markdownTitle(md)).toBe(title));
});

describe("documentsFromFiles", () => {
  const root = mkdtempSync(join(tmpdir(), "docs-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("walks folders recursively in sorted order, streams JSONL and reports unsupported files", async () => {
    mkdirSync(join(root, "sub", "deep"), { recursive: true });
    mkdirSync(join(root, ".git"));
    writeFileSync(join(root, "b.md"), "# Bee\nbuzz");
    writeFileSync(join(root, "a.jsonl"), `${JSON.stringify({ id: "1", text: "one" })}\n{bad\n`);
    writeFileSync(join(root, "sub", "deep", "c.txt"), "sea");
    writeFileSync(join(root, "sub", "img.png"), "png");
    writeFileSync(join(root, ".git", "x.txt"), "hidden");
    writeFileSync(join(root, ".DS_Store"), "hidden");
    const single = join(root, "single.json");
    writeFileSync(single, JSON.stringify({ id: "s", text: "solo" }));

    const skipped: SkippedInput[] = [];
    const docs: SourceDocument[] = [];
    for await (const d of documentsFromFiles([join(root, "sub"), root], { onSkip: (s) => skipped.push(s) }))
      docs.push(d);
    // The folder `root` also contains `sub`, so its files appear twice under different keys.
    expect(docs.map((d) => d.id)).toEqual(["deep/c.txt", "1", "b.md", "s", "sub/deep/c.txt"]);
    expect(docs.find((d) => d.id === "b.md")!.metadata).toEqual({ title: "Bee" });
    expect(skipped).toEqual([
      { key: "img.png", reason: expect.stringMatching(/unsupported/) },
      { key: "a.jsonl", line: 2, reason: expect.stringMatching(/malformed JSON/) },
      { key: "sub/img.png", reason: expect.stringMatching(/unsupported/) },
    ]);
    expect((await listLocalFiles([single])).map((f) => f.key)).toEqual(["single.json"]);
  });

  it("rejects a path that does not exist", async () => {
    await expect(listLocalFiles([join(root, "missing")])).rejects.toBeInstanceOf(ValidationError);
  });
});
