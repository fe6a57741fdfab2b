// Documents from local files and folders (the CLI's `index <paths...>`), through the same parser
// as corpus objects in the store. Kept out of shared/core because it touches the filesystem.
import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { basename, join, relative, sep } from "node:path";
import { type ParseOptions, parseCorpusObject } from "../core/documents.ts";
import { ValidationError } from "../core/errors.ts";
import type { SourceDocument } from "../core/types.ts";

export interface LocalFile {
  /** Absolute or as-given path on disk. */
  path: string;
  /** Key the parser sees: the path relative to the folder argument (POSIX separators), or the file's name. */
  key: string;
}

/**
 * Files under `paths`, folders walked recursively in sorted order. Hidden entries (".git", ".DS_Store")
 * are left out; files of unsupported types are kept so the parser reports them as skipped.
 */
export async function listLocalFiles(paths: string[]): Promise<LocalFile[]> {
  const out: LocalFile[] = [];
  for (const p of paths) {
    const st = await stat(p).catch(() => null);
    if (!st) throw new ValidationError(`no such file or folder: ${p}`);
    if (st.isFile()) {
      out.push({ path: p, key: basename(p) });
      continue;
    }
    const walk = async (dir: string): Promise<void> => {
      const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
        a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
      );
      for (const e of entries) {
        if (e.name.startsWith(".")) continue;
        const full = join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.isFile()) out.push({ path: full, key: relative(p, full).split(sep).join("/") });
      }
    };
    await walk(p);
  }
  return out;
}

/** Every document of the given files/folders; JSONL files are streamed from disk. */
export async function* documentsFromFiles(
  paths: string[],
  opts: ParseOptions & { onFile?: (file: LocalFile) => void } = {},
): AsyncGenerator<SourceDocument> {
  for (const file of await listLocalFiles(paths)) {
    opts.onFile?.(file);
    yield* parseCorpusObject(file.key, createReadStream(file.path) as AsyncIterable<Uint8Array>, opts);
  }
}
