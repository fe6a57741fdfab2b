// The web playground end to end in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core): the real search API on loopback (demo corpus indexed by the CLI's build +
// publish path, hashing embedder, faiss) calling the real reranker service (tiny fixture
// cross-encoder on onnxruntime-node). A query typed with the keyboard shows the API's order for
// the same request, with both stages' ranks and the movement between them; nothing leaves loopback.
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { loadConfig } from "../../shared/core/config.ts";
import { playgroundRoutes } from "../../shared/http/playground.ts";
import { resolveEmbeddedDefaults } from "../../scripts/local/defaults.ts";
import { indexLocalFiles } from "../../scripts/local/index-files.ts";
import { type LocalServices, startLocalServices } from "../../scripts/local/services.ts";
import { ensureFixtureModel } from "../helpers/fixtures.ts";

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium)
  console.warn(`SKIP playground browser tests: ${CHROMIUM} missing (install: node scripts/setup.mjs --browser)`);

const repoRoot = path.resolve(import.meta.dirname, "../..");

interface Hit {
  id: string;
  retrieval: { rank: number; score: number };
  rerank: { rank: number; score: number } | null;
}

describe("playground static routes", () => {
  it("serves the three files with their types and a CSP that only allows this origin, nothing else", async () => {
    const app = playgroundRoutes();
    const page = await app.request("/");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = page.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    const html = await page.text();
    // Every referenced asset is local (no scheme, no protocol-relative URL).
    for (const [, ref] of html.matchAll(/(?:src|href)="([^"]+)"/g)) expect(ref).toMatch(/^(\/(?!\/)|#|data:)/);
    expect((await app.request("/playground/app.js")).headers.get("content-type")).toMatch(/^text\/javascript/);
    expect((await app.request("/playground/app.css")).headers.get("content-type")).toMatch(/^text\/css/);
    expect((await app.request("/playground/index.html")).status).toBe(404);
    expect((await app.request("/playground/..%2Fplayground.ts")).status).toBe(404);
    const missing = await playgroundRoutes({ dir: path.join(os.tmpdir(), "no-such-playground") }).request("/");
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: "not_found" } });
  });
});

describe.skipIf(!haveChromium)("playground in headless Chromium", () => {
  let tmp: string;
  let services: LocalServices;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "playground-"));
    const cfg = loadConfig({
      STORE_KIND: "fs",
      STORE_DIR: tmp,
      EMBEDDER: "hashing",
      RERANKER_MODEL_DIR: await ensureFixtureModel("tiny-cross"),
      // The browser's search and the comparison call must both be reranked, however busy the machine.
      RERANKER_TIMEOUT_MS: "60000",
    });
    const store = createFsStore(tmp);
    await indexLocalFiles([path.join(repoRoot, "scripts/demo-corpus")], { cfg, store });
    services = await startLocalServices({
      defaults: await resolveEmbeddedDefaults(cfg),
      store,
      searchPort: 0,
      rerankPort: 0,
      rerankService: true,
    });
    await services.waitHealthy(60_000);
    base = services.searchUrl;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await services?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  /** A page that records every request it makes. */
  async function open(width: number): Promise<{ page: Page; requests: string[]; errors: string[] }> {
    const page = await browser.newPage({ viewport: { width, height: 900 } });
    const requests: string[] = [];
    const errors: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text());
    });
    await page.goto(`${base}/`);
    await page.locator("#service").filter({ hasText: "Index " }).waitFor();
    return { page, requests, errors };
  }

  interface Answer {
    results: Hit[];
    reranked: boolean;
    reranked_candidates: number;
    candidates: number;
    retrieval: string;
  }

  async function apiSearch(body: Record<string, unknown>): Promise<Answer> {
    const res = await fetch(`${base}/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as Answer;
  }

  /** What the page shows per result: passage id, position, stage ranks and the movement badge. */
  function shown(page: Page) {
    return page.locator("#results > li").evaluateAll((items) =>
      items.map((li) => ({
        id: li.getAttribute("data-id"),
        position: li.querySelector(".position")?.textContent,
        ranks: [...li.querySelectorAll(".stage-rank")].map((e) => e.textContent),
        move: li.querySelector(".move [aria-hidden]")?.textContent ?? li.querySelector(".move")?.textContent,
      })),
    );
  }

  it("searches by keyboard alone and shows the API's order with both stages' ranks and the movement", async () => {
    const { page, requests, errors } = await open(1280);
    await expect(page.locator("#fixture-notice").isVisible()).resolves.toBe(true);

    const query = "why rerank only a few candidates";
    await page.keyboard.press("/");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("q");
    await page.keyboard.type(query);
    await page.keyboard.press("Tab"); // Search button
    await page.keyboard.press("Tab"); // k
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("k");
    await page.keyboard.press("ControlOrMeta+A");
    await page.keyboard.type("4");
    await page.keyboard.press("Tab"); // candidates
    await page.keyboard.press("ControlOrMeta+A");
    await page.keyboard.type("12");
    await page.keyboard.press("Enter"); // implicit submission

    await page.locator("#status").filter({ hasText: "4 results" }).waitFor();
    const rows = await shown(page);
    const api = await apiSearch({ query, k: 4, candidates: 12, fusion: "rerank", rerank: true, collapse: false });
    expect(api.reranked).toBe(true);
    expect(rows.map((r) => r.id)).toEqual(api.results.map((h) => h.id));
    rows.forEach((row, i) => {
      const hit = api.results[i];
      expect(row.position).toBe(String(i + 1));
      expect(row.ranks).toEqual([`#${hit.retrieval.rank}`, `#${hit.rerank!.rank}`]);
      const delta = hit.retrieval.rank - (i + 1);
      expect(row.move).toBe(delta > 0 ? `▲${delta}` : delta < 0 ? `▼${-delta}` : "=");
    });
    // Hybrid retrieval (the default) reranks the union of both sides' 12 best, so up to 24.
    expect(api.retrieval).toBe("hybrid");
    await expect(page.locator("#status").textContent()).resolves.toContain(
      `hybrid retrieval, reranked ${api.reranked_candidates} of ${api.candidates} candidates`,
    );
    await expect(page.locator("#timings").textContent()).resolves.toMatch(
      /Embed query[\d.]+ msDense search[\d.]+ msBM25 search[\d.]+ msRerank[\d.]+ msTotal \(server\)[\d.]+ ms/,
    );
    // Each hybrid hit shows its rank on both sides (— where it is not among that side's candidates).
    const sides = await page.locator("#results > li .side-ranks").allTextContents();
    expect(sides).toHaveLength(4);
    for (const line of sides) expect(line).toMatch(/^Dense (#\d+|—) · BM25 (#\d+|—)$/);
    // The state is in the URL, so a reload shows the same search.
    expect(new URL(page.url()).searchParams.get("q")).toBe(query);

    expect(errors).toEqual([]);
    const foreign = requests.filter((u) => !u.startsWith(`${base}/`));
    expect(foreign).toEqual([]);
    expect(requests.some((u) => u === `${base}/search`)).toBe(true);
    await page.close();
  });

  it("linear fusion enables alpha and shows the fused score; bad options show the API's message", async () => {
    const { page } = await open(1280);
    await page.getByLabel("Query").fill("snapshot pointer conditional write");
    await page.getByLabel("Fusion").selectOption("linear");
    expect(await page.getByLabel("Alpha").isEnabled()).toBe(true);
    await page.getByLabel("Alpha").fill("0.5");
    await page.getByRole("button", { name: "Search" }).click();
    await page.locator("#results > li").first().waitFor();
    const rows = await shown(page);
    const api = await apiSearch({
      query: "snapshot pointer conditional write",
      k: 5,
      candidates: 20,
      fusion: "linear",
      alpha: 0.5,
      rerank: true,
      collapse: false,
    });
    expect(rows.map((r) => r.id)).toEqual(api.results.map((h) => h.id));
    await expect(page.locator(".stage-fused").first().textContent()).resolves.toMatch(/Fused \(linear\)/);

    await page.getByLabel("Results (k)").fill("30");
    await page.getByLabel("Candidates").fill("10");
    await page.getByRole("button", { name: "Search" }).click();
    await page.locator("#alerts").filter({ hasText: "must be ≤ candidates (10)" }).waitFor();
    expect(await page.locator("#results > li").count()).toBe(0);
    await page.close();
  });

  it("the retrieval selector picks the first stage, which the status line reports", async () => {
    const { page } = await open(1280);
    await page.getByLabel("Query").fill("snapshot pointer conditional write");
    await page.getByLabel("Retrieval").selectOption("sparse");
    await page.getByRole("button", { name: "Search" }).click();
    await page.locator("#status").filter({ hasText: "sparse retrieval" }).waitFor();
    const rows = await shown(page);
    const api = await apiSearch({
      query: "snapshot pointer conditional write",
      k: 5,
      candidates: 20,
      fusion: "rerank",
      rerank: true,
      collapse: false,
      retrieval: "sparse",
    });
    expect(api.retrieval).toBe("sparse");
    expect(rows.map((r) => r.id)).toEqual(api.results.map((h) => h.id));
    expect(new URL(page.url()).searchParams.get("retrieval")).toBe("sparse");
    // Side ranks are shown in hybrid retrieval only; sparse times BM25 and not the dense search.
    expect(await page.locator("#results .side-ranks").count()).toBe(0);
    await expect(page.locator("#timings").textContent()).resolves.not.toMatch(/Dense search/);
    await expect(page.locator("#timings").textContent()).resolves.toMatch(/BM25 search/);
    await page.close();
  });

  it("fits a 375 px wide screen without horizontal scrolling", async () => {
    const { page, requests } = await open(375);
    await page.getByLabel("Query").fill("cold starts in serverless search");
    await page.getByLabel("Query").press("Enter");
    await page.locator("#results > li").first().waitFor();
    const widths = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      view: window.innerWidth,
    }));
    expect(widths.scroll).toBeLessThanOrEqual(widths.view);
    const box = await page.locator("#results > li").first().boundingBox();
    expect(box!.x).toBeGreaterThanOrEqual(0);
    expect(box!.x + box!.width).toBeLessThanOrEqual(375);
    expect(requests.filter((u) => !u.startsWith(`${base}/`))).toEqual([]);
    await page.close();
  });
});
