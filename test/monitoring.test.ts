/// <reference types="vite/client" />
import { describe, expect, it } from "vitest";
import dashboard from "../monitoring/grafana-dashboard.json";
import alertRules from "../monitoring/prometheus-alerts.yml?raw";
import { api } from "./helpers";

// Everything in monitoring/ must only read what GET /metrics exports, in a form Grafana and Prometheus accept.

const alertTests = import.meta.glob<string>("../monitoring/tests/*.test.yml", { query: "?raw", import: "default", eager: true });

type Target = { expr?: string; refId?: string; legendFormat?: string; datasource?: unknown };
type Panel = { id?: number; type?: string; title?: string; gridPos?: { x: number; y: number; w: number; h: number }; datasource?: unknown; targets?: Target[]; fieldConfig?: { defaults?: { unit?: string }; overrides?: unknown[] } };
const board = dashboard as unknown as Record<string, any> & { panels: Panel[] };
const panels = board.panels ?? [];

const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"]);

/** The metric names a PromQL expression selects (functions, label matchers, grouping labels, ranges and Grafana variables removed). */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_:]*\}?/g, " ");
  const names = new Set<string>();
  for (const m of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    if (m[2] || KEYWORDS.has(m[1]!.toLowerCase())) continue;
    if (/^\d/.test(m[1]!)) continue;
    names.add(m[1]!);
  }
  return [...names];
}

const alertExprs = [...alertRules.matchAll(/^\s*expr:\s*(.+)$/gm)].map((m) => m[1]!.trim());
const alertNames = [...alertRules.matchAll(/^\s*-\s*alert:\s*(\S+)/gm)].map((m) => m[1]!);
const panelExprs = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr ?? "" })));

/** name → TYPE, from the exposition's `# TYPE` lines (each also needs its `# HELP`). */
async function exported(): Promise<{ types: Map<string, string>; help: Set<string> }> {
  const r = await api("GET", "/metrics", { as: "viewer" });
  expect(r.status).toBe(200);
  const text = r.body as string;
  const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!] as const));
  const help = new Set([...text.matchAll(/^# HELP (\S+) /gm)].map((m) => m[1]!));
  return { types, help };
}

/** The exported family a selected series belongs to: itself, or the histogram its _bucket/_sum/_count is part of. */
function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, "");
  return base !== name && types.get(base) === "histogram" ? base : undefined;
}

describe("monitoring/ reads only exported metrics", () => {
  it("the expression parser finds metric names and nothing else", () => {
    expect(metricNames('sum by (currency) (increase(billing_revenue_total{currency="USD"}[1h])) < 1000')).toEqual(["billing_revenue_total"]);
    expect(metricNames("histogram_quantile(0.95, sum by (le, gateway) (rate(billing_payment_duration_seconds_bucket[$__rate_interval])))")).toEqual(["billing_payment_duration_seconds_bucket"]);
    expect(metricNames("rate(a_total[5m]) / on (gateway) group_left rate(b_total[5m]) > 0.1")).toEqual(["a_total", "b_total"]);
  });

  it("every dashboard and alert expression selects a metric GET /metrics describes (HELP and TYPE) before any sample exists", async () => {
    // First call in this file's fresh storage: no payment, refund or request has been counted yet.
    const { types, help } = await exported();
    expect(panelExprs.length).toBeGreaterThan(10);
    expect(alertExprs.length).toBe(alertNames.length);
    const missing: string[] = [];
    for (const { panel, expr } of [...panelExprs, ...alertExprs.map((expr) => ({ panel: "alert rule", expr }))]) {
      const names = metricNames(expr);
      if (names.length === 0) missing.push(`${panel}: no metric in ${expr}`);
      for (const name of names) {
        const family = familyOf(name, types);
        if (!family || !help.has(family)) missing.push(`${panel}: ${name}`);
        // A histogram is only ever read through its series, a counter only through rate/increase.
        else if (types.get(family) === "histogram" && family === name) missing.push(`${panel}: ${name} is a histogram, select _bucket/_sum/_count`);
        else if (types.get(family) === "counter" && !new RegExp(`(rate|increase)\\(\\s*${name}\\b`).test(expr)) missing.push(`${panel}: counter ${name} read without rate()/increase()`);
        else if (types.get(family) === "gauge" && new RegExp(`(rate|increase)\\(\\s*${name}\\b`).test(expr)) missing.push(`${panel}: gauge ${name} read with rate()/increase()`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("the dashboard covers revenue, payments, gateway latency, subscriptions, backlog and notifications", () => {
    const used = new Set(panelExprs.flatMap(({ expr }) => metricNames(expr)));
    for (const name of [
      "billing_revenue_total",
      "billing_payments_total",
      "billing_payments_success_total",
      "billing_payments_failed_total",
      "billing_payment_duration_seconds_bucket",
      "billing_refunds_total",
      "billing_http_request_duration_seconds_bucket",
      "billing_subscriptions_active",
      "billing_subscription_queue_size",
      "billing_notifications",
    ]) {
      expect(used, name).toContain(name);
    }
    expect(panelExprs.filter(({ expr }) => expr.includes("histogram_quantile(")).length).toBeGreaterThanOrEqual(2);
  });

  it("every alert rule has promtool unit tests", () => {
    const tested = new Set(Object.values(alertTests).flatMap((text) => [...text.matchAll(/alertname:\s*(\S+)/g)].map((m) => m[1]!)));
    expect(alertNames.length).toBeGreaterThan(0);
    for (const name of alertNames) expect(tested, name).toContain(name);
  });
});

describe("monitoring/grafana-dashboard.json is importable", () => {
  it("has the dashboard model's identity, time settings and a Prometheus datasource variable", () => {
    expect(board).toMatchObject({ uid: expect.stringMatching(/^[a-z0-9-]{1,40}$/), title: expect.any(String), schemaVersion: expect.any(Number), refresh: expect.any(String) });
    expect(board.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(board.tags).toEqual(expect.arrayContaining([expect.any(String)]));
    expect(board.time).toEqual({ from: expect.stringMatching(/^now-/), to: "now" });
    const variable = board.templating?.list?.find((v: { name: string }) => v.name === "datasource");
    expect(variable).toMatchObject({ type: "datasource", query: "prometheus" });
  });

  it("every panel has a type, a place on the grid, the datasource variable, targets and a unit", () => {
    expect(panels.length).toBeGreaterThan(0);
    const ids = new Set<number>();
    const cells = new Set<string>();
    for (const p of panels) {
      const where = p.title ?? JSON.stringify(p);
      expect(["timeseries", "stat", "gauge", "table", "bargauge"], where).toContain(p.type);
      expect(typeof p.id, where).toBe("number");
      expect(ids.has(p.id!), `${where}: duplicate id`).toBe(false);
      ids.add(p.id!);
      const g = p.gridPos!;
      expect(g, where).toMatchObject({ x: expect.any(Number), y: expect.any(Number), w: expect.any(Number), h: expect.any(Number) });
      expect(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0, `${where}: off the 24-column grid`).toBe(true);
      for (let x = g.x; x < g.x + g.w; x++)
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(cells.has(`${x},${y}`), `${where}: overlaps another panel at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      expect(p.datasource, where).toEqual({ type: "prometheus", uid: "${datasource}" });
      expect(p.targets?.length, where).toBeGreaterThan(0);
      const refIds = new Set<string>();
      for (const t of p.targets!) {
        expect(t.expr, where).toEqual(expect.any(String));
        expect(t.refId, where).toMatch(/^[A-Z]$/);
        expect(refIds.has(t.refId!), `${where}: duplicate refId`).toBe(false);
        refIds.add(t.refId!);
        expect(t.datasource, where).toEqual({ type: "prometheus", uid: "${datasource}" });
        if (p.type === "timeseries") expect(t.legendFormat, where).toEqual(expect.any(String));
      }
      expect(p.fieldConfig?.defaults?.unit, `${where}: unit`).toEqual(expect.any(String));
    }
  });

  it("money is shown per currency in its own unit, ratios as percent, latency in seconds", () => {
    for (const p of panels) {
      const exprs = (p.targets ?? []).map((t) => t.expr ?? "");
      const unit = p.fieldConfig?.defaults?.unit;
      for (const expr of exprs.filter((e) => e.includes("billing_revenue_total"))) {
        // Never a sum across currencies: grouped by currency, or one currency selected.
        expect(expr, p.title).toMatch(/by \([^)]*\bcurrency\b|currency="[A-Z]{3}"/);
      }
      // A currency unit on a revenue series only where the series is that currency (the per-currency overrides).
      if (exprs.some((e) => e.includes("billing_revenue_total")) && p.type !== "table") {
        expect(unit, p.title).not.toMatch(/^currency/);
        expect(JSON.stringify(p.fieldConfig?.overrides), p.title).toContain('{"matcher":{"id":"byName","options":"USD"},"properties":[{"id":"unit","value":"currencyUSD"}]}');
      }
      if (exprs.some((e) => e.includes("histogram_quantile("))) expect(unit, p.title).toBe("s");
      if (/success|failure|error/i.test(p.title ?? "") && /rate|ratio/i.test(p.title ?? "")) expect(unit, p.title).toBe("percentunit");
    }
  });
});
