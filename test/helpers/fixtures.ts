// Fixture models for tests (random weights: scores mean nothing), generated once into
// .cache/fixtures/ and shared by every test process; plus paths into ../shared/data.
import { existsSync } from "node:fs";
import path from "node:path";
import { DEFAULT_SHARED_DATA } from "../../scripts/fixtures/index.ts";

export {
  ensureFixtureModel,
  FIXTURE_NAMES,
  FIXTURES,
  type FixtureName,
  type FixtureOptions,
} from "../../scripts/fixtures/index.ts";

/** ../shared/data beside the repository, or null when it is absent (tests skip with a message). */
export function sharedDataDir(): string | null {
  return existsSync(DEFAULT_SHARED_DATA) ? DEFAULT_SHARED_DATA : null;
}

/** A folder under ../shared/data/models holding `file` (default tokenizer.json), or null. */
export function sharedModelDir(name: string, file = "tokenizer.json"): string | null {
  const root = sharedDataDir();
  if (!root) return null;
  const dir = path.join(root, "models", name);
  return existsSync(path.join(dir, file)) ? dir : null;
}
