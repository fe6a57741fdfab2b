// Search results as a terminal table: final position, first-stage rank, reranked rank, the
// movement between them, both stages' scores, the document and as much text as fits.
import type { SearchResponse } from "../../shared/core/search.ts";
import { type Column, formatTable } from "./output.ts";

const num = (s: number) => (Math.abs(s) >= 100 ? s.toFixed(0) : s.toFixed(4));

/** The results as a table: position, both stages' ranks, movement, scores, document and text. */
export function resultsTable(res: SearchResponse, width = process.stdout.columns ?? 120): string {
  const fused = res.fusion !== "rerank";
  const columns: Column[] = [
    { header: "#", align: "right" },
    { header: "first", align: "right" },
    { header: "rerank", align: "right" },
    { header: "move", align: "right" },
    { header: "retrieval", align: "right" },
    { header: "rerank score", align: "right" },
    ...(fused ? [{ header: `${res.fusion} score`, align: "right" as const }] : []),
    { header: "document", max: 28 },
    { header: "text" },
  ];
  const rows = res.results.map((h, i) => {
    const pos = i + 1;
    const delta = h.rerank ? h.retrieval.rank - pos : null;
    const move = delta === null ? "" : delta > 0 ? `▲${delta}` : delta < 0 ? `▼${-delta}` : "=";
    return [
      String(pos),
      String(h.retrieval.rank),
      h.rerank ? String(h.rerank.rank) : "-",
      move,
      num(h.retrieval.score),
      h.rerank ? num(h.rerank.score) : "-",
      ...(fused ? [num(h.score)] : []),
      h.doc_id,
      h.text.replace(/\s+/g, " ").trim(),
    ];
  });
  // The text column takes what the terminal has left.
  const fixed = formatTable(
    columns.slice(0, -1),
    rows.map((r) => r.slice(0, -1)),
  ).split("\n")[0].length;
  columns[columns.length - 1] = { header: "text", max: Math.max(20, width - fixed - 2) };
  return formatTable(columns, rows);
}
