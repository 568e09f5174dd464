import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../db/client";
import { preparedStatement } from "../db/prepared";

/**
 * Prometheus metrics kept in D1 (`metric_counters`, one row per name and label set) so every isolate adds to the
 * same numbers: writers put the statements below in the batch of the change they count, so a counter never drifts
 * from the data. Gauges are not stored; `renderPrometheus` computes them from D1 at scrape time.
 */

export type Labels = Record<string, string>;

/** Prometheus' default buckets, in seconds. */
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

// Three bound parameters per row; stay well under D1's 100 per statement.
const ROWS_PER_STATEMENT = 30;

export const escapeValue = (v: string) => v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");

/** The stored form of a label set: keys sorted, values escaped as in the exposition format (`a="x",b="y"`). */
export function canonicalLabels(labels: Labels): string {
  for (const k of Object.keys(labels)) if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(k)) throw new RangeError(`invalid label name ${k}`);
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}="${escapeValue(labels[k]!)}"`)
    .join(",");
}

/** The inverse of `canonicalLabels`. */
export function parseLabels(text: string): Labels {
  const out: Labels = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    out[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
  }
  return out;
}

/**
 * Prepared SQL (src/db/prepared.ts): four upserts per charge on the billing run's hot path; the text per row count is
 * built once per isolate. `value = value + excluded.value`: commutative, never read, so never contended.
 */
const upsertTexts = new Map<number, string>();
function upsertAdding(db: Db, rows: { name: string; labels: string; value: number }[]) {
  let text = upsertTexts.get(rows.length);
  if (!text) {
    const values = rows.map(() => "(?, ?, ?)").join(", ");
    text = `INSERT INTO "metric_counters" ("name", "labels", "value") VALUES ${values} ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "metric_counters"."value" + excluded.value`;
    upsertTexts.set(rows.length, text);
  }
  return preparedStatement(db, text, rows.flatMap((r) => [r.name, r.labels, r.value]));
}

type CounterRow = { name: string; labels: string; value: number };

/** The row adding `by` (a non-negative integer) to counter `name{labels}`, for `metricStatements`. */
export function counterRow(name: string, labels: Labels, by = 1): CounterRow {
  if (!Number.isSafeInteger(by) || by < 0) throw new RangeError(`a counter only grows by a non-negative integer, got ${by}`);
  return { name, labels: canonicalLabels(labels), value: by };
}

/** A statement adding `by` (a non-negative integer) to counter `name{labels}`; include it in the caller's batch. */
export function counterIncrement(db: Db, name: string, labels: Labels, by = 1): BatchItem<"sqlite"> {
  return upsertAdding(db, [counterRow(name, labels, by)]);
}

/** Statements adding every row (counters and histogram rows of one change) in as few upserts as the bound-parameter limit allows. */
export function metricStatements(db: Db, rows: CounterRow[]): BatchItem<"sqlite">[] {
  const out: BatchItem<"sqlite">[] = [];
  for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) out.push(upsertAdding(db, rows.slice(i, i + ROWS_PER_STATEMENT)));
  return out;
}

/**
 * Statements recording one observation of `seconds` in histogram `name{labels}`: every cumulative `_bucket{le=…}`
 * row (0 or 1, so each bucket exists from the first observation), `+Inf`, `_count`, and `_sum`. The sum is stored
 * as an integer in thousandths of the unit (milliseconds for seconds) and divided back when rendered.
 */
export function histogramObserve(db: Db, name: string, labels: Labels, seconds: number, buckets: readonly number[] = DEFAULT_BUCKETS): BatchItem<"sqlite">[] {
  return metricStatements(db, histogramRows(name, labels, seconds, buckets));
}

/** The rows of `histogramObserve`, for `metricStatements`. */
export function histogramRows(name: string, labels: Labels, seconds: number, buckets: readonly number[] = DEFAULT_BUCKETS): CounterRow[] {
  if (!Number.isFinite(seconds)) throw new RangeError(`observation must be finite, got ${seconds}`);
  const v = Math.max(0, seconds);
  const rows = [...new Set(buckets)]
    .sort((a, b) => a - b)
    .map((le) => ({ name: `${name}_bucket`, labels: canonicalLabels({ ...labels, le: String(le) }), value: v <= le ? 1 : 0 }));
  rows.push(
    { name: `${name}_bucket`, labels: canonicalLabels({ ...labels, le: "+Inf" }), value: 1 },
    { name: `${name}_sum`, labels: canonicalLabels(labels), value: Math.round(v * 1000) },
    { name: `${name}_count`, labels: canonicalLabels(labels), value: 1 },
  );
  return rows;
}
