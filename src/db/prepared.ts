import { fillPlaceholders, getTableColumns, getTableName } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { SQLiteColumn, SQLiteTable } from "drizzle-orm/sqlite-core";
import type { Db } from "./client";

/**
 * Prepared SQL for the billing run's hot path. drizzle builds a statement's text from its query tree on every call
 * (entity checks, escaping, parameter mapping): the run's CPU profile put that at ~23% of the worker's samples, much
 * of it in row inserts repeated several times per subscription (events, audit rows, invoice lines, metric counters).
 * Those inserts take their SQL text from here instead: built once per isolate from the table's drizzle definition
 * (so a column added to the schema is in it), with each value mapped to the driver as drizzle maps it (JSON text,
 * booleans as 0/1). Storage still lives behind small typed functions in the modules that own the tables; docs/scale.md
 * ("Billing run throughput") says why these few statements are not drizzle-built.
 */

type Shape = { text: string; columns: { key: string; column: SQLiteColumn }[] };
const shapes = new WeakMap<SQLiteTable, Map<string, Shape>>();

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * The insert's SQL text for `table` with the columns `keys` (in that order), cached per isolate: `values` (`VALUES
 * (?, …)` for `rowCount` rows) or `ifChanged` (`SELECT ?, … WHERE changes() > 0`: the row is written only when the
 * batch's previous statement changed a row).
 */
function shapeOf(table: SQLiteTable, keys: readonly string[], form: "values" | "ifChanged", rowCount = 1): Shape {
  let byKey = shapes.get(table);
  if (!byKey) shapes.set(table, (byKey = new Map()));
  const id = `${form}|${rowCount}|${keys.join(",")}`;
  let shape = byKey.get(id);
  if (!shape) {
    const all = getTableColumns(table) as Record<string, SQLiteColumn>;
    const columns = keys.map((key) => {
      const column = all[key];
      if (!column) throw new Error(`${getTableName(table)} has no column ${key}`);
      return { key, column };
    });
    const names = columns.map((c) => quote(c.column.name)).join(", ");
    const marks = columns.map(() => "?").join(", ");
    const tuples = Array.from({ length: rowCount }, () => `(${marks})`).join(", ");
    const text =
      form === "values"
        ? `INSERT INTO ${quote(getTableName(table))} (${names}) VALUES ${tuples}`
        : `INSERT INTO ${quote(getTableName(table))} (${names}) SELECT ${marks} WHERE changes() > 0`;
    shape = { text, columns };
    byKey.set(id, shape);
  }
  return shape;
}

/** The row's values in the shape's column order, as drizzle sends them to D1. */
function valuesOf(shape: Shape, row: Record<string, unknown>): unknown[] {
  return shape.columns.map(({ key, column }) => {
    const v = row[key];
    return v === null || v === undefined ? null : column.mapToDriverValue(v);
  });
}

/** The D1 binding drizzle was made with (drizzle() sets `$client`; `Db` does not declare it). */
const clientOf = (db: Db) => (db as Db & { $client: D1Database }).$client;

/**
 * A statement for drizzle's `db.batch` (and so for change sets) whose SQL text is given: D1 prepares it, drizzle
 * builds nothing. This is the item shape drizzle's D1 session batches (`_prepare()` → `getQuery()`, `stmt`,
 * `mapResult`); the batch answers D1's own result for it (`{ results, meta, success }`).
 */
export function preparedStatement(db: Db, text: string, params: unknown[]): BatchItem<"sqlite"> {
  const query = { sql: text, params };
  const item = {
    _prepare: () => ({
      getQuery: () => query,
      stmt: clientOf(db).prepare(text),
      mapResult: (result: unknown) => result,
    }),
  };
  return item as unknown as BatchItem<"sqlite">;
}

/** Keys of `row` whose value is given (undefined leaves the column to its SQL default, as drizzle does). */
const givenKeys = (row: Record<string, unknown>) => Object.keys(row).filter((k) => row[k] !== undefined);

/**
 * `db.insert(table).values(row)` as a prepared statement. Only for tables without `$defaultFn`/`$onUpdateFn` columns
 * (drizzle would fill those in; this does not).
 */
export function insertRow<T extends SQLiteTable>(db: Db, table: T, row: T["$inferInsert"]): BatchItem<"sqlite"> {
  const r = row as Record<string, unknown>;
  const shape = shapeOf(table, givenKeys(r), "values");
  return preparedStatement(db, shape.text, valuesOf(shape, r));
}

const updateShapes = new WeakMap<SQLiteTable, Map<string, Shape & { match: { key: string; column: SQLiteColumn; count: number }[] }>>();

/**
 * `db.update(table).set(fields).where(and(eq(k, v), …))` as a prepared statement: a status move guarded on the row's
 * id and current status, with the fields the change sets (the SQL text cached per table, fields and matched columns).
 * A `match` value that is an array matches any of its values (`IN`). Plain values only: an SQL expression in
 * `fields` needs drizzle (or `builtOnce`).
 */
export function updateWhere<T extends SQLiteTable>(db: Db, table: T, fields: Partial<T["$inferInsert"]>, match: Partial<Record<keyof T["$inferInsert"], unknown>>): BatchItem<"sqlite"> {
  const f = fields as Record<string, unknown>;
  const m = match as Record<string, unknown>;
  const setKeys = givenKeys(f);
  const matchKeys = Object.keys(m);
  // -1: one value (`=`); n ≥ 0: a list of n (`IN`, false when empty).
  const counts = matchKeys.map((k) => (Array.isArray(m[k]) ? (m[k] as unknown[]).length : -1));
  let byKey = updateShapes.get(table);
  if (!byKey) updateShapes.set(table, (byKey = new Map()));
  const id = `${setKeys.join(",")}|${matchKeys.map((k, i) => `${k}:${counts[i]}`).join(",")}`;
  let shape = byKey.get(id);
  if (!shape) {
    const all = getTableColumns(table) as Record<string, SQLiteColumn>;
    const col = (key: string) => {
      const column = all[key];
      if (!column) throw new Error(`${getTableName(table)} has no column ${key}`);
      return column;
    };
    const columns = setKeys.map((key) => ({ key, column: col(key) }));
    const matched = matchKeys.map((key, i) => ({ key, column: col(key), count: counts[i]! }));
    const where = matched.map((c) => (c.count >= 0 ? `${quote(c.column.name)} IN (${Array.from({ length: c.count }, () => "?").join(", ")})` : `${quote(c.column.name)} = ?`)).join(" AND ");
    const text = `UPDATE ${quote(getTableName(table))} SET ${columns.map((c) => `${quote(c.column.name)} = ?`).join(", ")} WHERE ${where}`;
    shape = { text, columns, match: matched };
    byKey.set(id, shape);
  }
  const driver = (column: SQLiteColumn, v: unknown) => (v === null || v === undefined ? null : column.mapToDriverValue(v));
  const params = [...valuesOf(shape, f), ...shape.match.flatMap(({ key, column, count }) => (count >= 0 ? (m[key] as unknown[]).map((v) => driver(column, v)) : [driver(column, m[key])]))];
  if (params.length > MAX_PARAMS) throw new Error(`an update of ${getTableName(table)} with ${params.length} bound parameters (D1 allows ${MAX_PARAMS})`);
  return preparedStatement(db, shape.text, params);
}

/** D1's bound-parameter limit per statement (Cloudflare's D1 limits page). */
const MAX_PARAMS = 100;

/**
 * `rows` (all with the same columns given) in as few multi-row inserts as D1's 100 bound parameters allow, in
 * order: one statement where `insertRow` would make one per row. Rows get their INTEGER PRIMARY KEY (rowid) in
 * the order given, as separate inserts would.
 */
export function insertRows<T extends SQLiteTable>(db: Db, table: T, rows: T["$inferInsert"][]): BatchItem<"sqlite">[] {
  if (!rows.length) return [];
  const keys = givenKeys(rows[0] as Record<string, unknown>);
  const signature = keys.join(",");
  for (const r of rows) if (givenKeys(r as Record<string, unknown>).join(",") !== signature) return rows.map((row) => insertRow(db, table, row));
  const perStatement = Math.max(1, Math.floor(MAX_PARAMS / keys.length));
  const out: BatchItem<"sqlite">[] = [];
  for (let i = 0; i < rows.length; i += perStatement) {
    const chunk = rows.slice(i, i + perStatement) as Record<string, unknown>[];
    const shape = shapeOf(table, keys, "values", chunk.length);
    out.push(preparedStatement(db, shape.text, chunk.flatMap((r) => valuesOf(shape, r))));
  }
  return out;
}

/**
 * The row's insert, applied only when the statement just before it in the batch changed a row (SQLite's
 * `changes()`; an INSERT … SELECT that writes a row counts as a change, so such inserts chain).
 */
export function insertRowIfChanged<T extends SQLiteTable>(db: Db, table: T, row: T["$inferInsert"]): BatchItem<"sqlite"> {
  const r = row as Record<string, unknown>;
  const shape = shapeOf(table, givenKeys(r), "ifChanged");
  return preparedStatement(db, shape.text, valuesOf(shape, r));
}

type Prepared = { getQuery(): { sql: string; params: unknown[] }; mapResult(response: unknown, isFromBatch?: boolean): unknown };
type Built = { text: string; params: unknown[]; prepared: Prepared };

const builtOf = (q: BatchItem<"sqlite">): Built => {
  const prepared = (q as unknown as { prepare(): Prepared }).prepare();
  const { sql, params } = prepared.getQuery();
  return { text: sql, params, prepared };
};

function bound(db: Db, { text, params, prepared }: Built, values: Record<string, unknown>): BatchItem<"sqlite"> {
  const filled = fillPlaceholders(params, values);
  const item = {
    _prepare: () => ({
      getQuery: () => ({ sql: text, params: filled }),
      stmt: clientOf(db).prepare(text),
      mapResult: (result: unknown, isFromBatch?: boolean) => prepared.mapResult(result, isFromBatch),
    }),
  };
  return item as unknown as BatchItem<"sqlite">;
}

/**
 * Drizzle queries built once per isolate and bound per call: `build` writes them with drizzle's builder, naming
 * their inputs with `sql.placeholder("name")`; each call fills those from `values` (mapped as drizzle maps them) and
 * answers items for `db.batch`, typed and mapped exactly as the built queries (rows as objects of their fields). For
 * the reads every renewal and charge makes: on the local run, building them cost more CPU than their D1 call.
 */
export function builtOnce<T extends readonly BatchItem<"sqlite">[]>(build: (db: Db) => T): (db: Db, values: Record<string, unknown>) => T {
  let built: Built[] | null = null;
  return (db, values) => {
    built ??= build(db).map(builtOf);
    return built.map((b) => bound(db, b, values)) as unknown as T;
  };
}
