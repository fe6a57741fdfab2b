// The web playground's static files (shared/http/playground/: index.html, app.js, app.css) as a
// Hono sub-app. Mount it on the search app through its `routes` hook:
//   createSearchApp({ ..., routes: (app) => app.route("/", playgroundRoutes()) })
// The page talks only to the API that served it (a strict Content-Security-Policy says so to the
// browser too): no CDN, no web fonts, no analytics.
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { Hono } from "hono";

export interface PlaygroundOptions {
  /** Folder of the static files (default: ./playground next to this module). */
  dir?: string | URL;
  /** Cache-Control of the assets (default "no-cache": revalidate, so an edited file shows at once). */
  cacheControl?: string;
}

/** File name → media type; nothing else in the folder is served. */
export const PLAYGROUND_FILES: Readonly<Record<string, string>> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
};

export const PLAYGROUND_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

export function playgroundRoutes(opts: PlaygroundOptions = {}): Hono {
  const base = opts.dir ?? new URL("./playground/", import.meta.url);
  const dir = typeof base === "string" ? pathToFileURL(base.endsWith("/") ? base : `${base}/`) : base;
  const cacheControl = opts.cacheControl ?? "no-cache";
  // Read once per process; a missing file (a bundle deployed without the folder) is retried next time.
  const cache = new Map<string, Promise<Uint8Array>>();
  const load = (name: string): Promise<Uint8Array> => {
    let p = cache.get(name);
    if (!p) {
      p = readFile(new URL(name, dir)).then(
        (b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
        (e) => {
          cache.delete(name);
          throw e;
        },
      );
      cache.set(name, p);
    }
    return p;
  };

  const app = new Hono();
  const serveFile = async (name: string): Promise<Response> => {
    let body: Uint8Array;
    try {
      body = await load(name);
    } catch {
      return Response.json(
        { error: { code: "not_found", message: `playground file ${name} is not deployed with this service` } },
        { status: 404 },
      );
    }
    return new Response(body as BodyInit, {
      headers: {
        "content-type": PLAYGROUND_FILES[name],
        "cache-control": cacheControl,
        "content-security-policy": PLAYGROUND_CSP,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
      },
    });
  };
  app.get("/", () => serveFile("index.html"));
  app.get("/playground", (c) => c.redirect("/", 301));
  app.get("/playground/:file", (c) => {
    const file = c.req.param("file");
    if (file === "index.html" || !Object.hasOwn(PLAYGROUND_FILES, file)) return c.notFound();
    return serveFile(file);
  });
  return app;
}
