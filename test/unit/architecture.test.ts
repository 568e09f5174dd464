import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

// The source as text, read from disk (this project runs in node; vite's raw glob cost a module fetch per file): the
// rules are checked where the code is, in every run of the suite.
const root = new URL("../../", import.meta.url);
const files = ["src", "queues", "durable-objects"].flatMap((dir) =>
  (readdirSync(new URL(dir, root), { recursive: true }) as string[])
    .filter((f) => f.endsWith(".ts"))
    .sort()
    .map((f) => ({ path: `${dir}/${f}`, text: readFileSync(new URL(`${dir}/${f}`, root), "utf8") })),
);

/** Relative imports of a file, resolved to repository paths (extension-less specifiers get .ts). */
function importsOf(file: { path: string; text: string }): string[] {
  const out: string[] = [];
  for (const m of file.text.matchAll(/(?:^|\n)\s*(?:import|export)\s+(type\s+)?[^;]*?from\s+["'](\.{1,2}\/[^"']+)["']/g)) {
    if (m[1]) continue; // type-only imports vanish at run time
    const parts = file.path.split("/").slice(0, -1);
    for (const seg of m[2]!.split("/")) {
      if (seg === "..") parts.pop();
      else if (seg !== ".") parts.push(seg);
    }
    const p = parts.join("/");
    out.push(p.endsWith(".ts") ? p : `${p}.ts`);
  }
  return out;
}

/** The unit a file belongs to: src/modules/<area>, src/<dir>, queues, durable-objects. */
function unitOf(path: string): string {
  const p = path.split("/");
  if (p[0] === "src" && p[1] === "modules") return `modules/${p[2]}`;
  if (p[0] === "src") return p.length > 2 ? p[1]! : "src";
  return p[0]!;
}

// HTTP route files compose use cases of several areas (they are the outer `api` ring, even while they live beside
// their module): their imports do not count as a module depending on another.
const isRouteFile = (path: string) => /\/(routes|ops|api-keys|campaigns|stats|docs)\.ts$/.test(path) || path === "src/app.ts";

/** Each import cycle among units (a strongly connected component of two or more), printed as `a -> b -> … -> a`. */
function cyclesOf(edges: Map<string, Set<string>>): string[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1) out.push(scc.map((a) => `${a} -> ${[...(edges.get(a) ?? [])].filter((b) => scc.includes(b)).join(", ")}`).join("; "));
  };
  for (const v of new Set([...edges.keys(), ...[...edges.values()].flatMap((s) => [...s])])) if (!index.has(v)) visit(v);
  return out;
}

describe("architecture", () => {
  it("reads the source tree", () => {
    expect(files.length).toBeGreaterThan(100);
    expect(files.some((f) => f.path === "src/platform/change-set.ts")).toBe(true);
  });

  it("modules import each other in no cycle of any length (routes aside), and nothing imports dynamically", () => {
    const edges = new Map<string, Set<string>>();
    for (const f of files) {
      if (isRouteFile(f.path)) continue;
      for (const target of importsOf(f)) {
        const [a, b] = [unitOf(f.path), unitOf(target)];
        if (a === b || !a.startsWith("modules/") || !b.startsWith("modules/")) continue;
        if (!edges.has(a)) edges.set(a, new Set());
        edges.get(a)!.add(b);
      }
    }
    expect(cyclesOf(edges)).toEqual([]);
    // A dynamic import hides a cycle from this check; the one allowed loads Stripe's SDK only when Stripe is configured.
    const lazy = files.filter((f) => /\bimport\(\s*["']/.test(f.text) && !(f.path === "src/gateways/index.ts" && /import\("\.\/stripe"\)/.test(f.text)));
    expect(lazy.map((f) => f.path)).toEqual([]);
  });

  it("the inner rings (platform, domain, lib, db, gateways) import nothing from the modules or the HTTP layer", () => {
    const inner = /^src\/(platform|domain|lib|db|gateways)\//;
    const outward = files.filter((f) => inner.test(f.path)).flatMap((f) => importsOf(f).filter((t) => t.startsWith("src/modules/") || t.startsWith("src/http/")).map((t) => `${f.path} -> ${t}`));
    expect(outward).toEqual([]);
  });

  it("use cases return the platform's failures, mapped once to problem+json: only route files import the HTTP layer", () => {
    // src/http/openapi.ts holds zod schemas shared by request contracts (pagination, dates): a schema, not HTTP.
    const declaresRoutes = (f: { text: string }) => /\bcreateRoute\(|\bregisterPath\(/.test(f.text);
    const http = files
      .filter((f) => f.path.startsWith("src/modules/") && !isRouteFile(f.path) && !declaresRoutes(f))
      .flatMap((f) => importsOf(f).filter((t) => t.startsWith("src/http/") && t !== "src/http/openapi.ts").map((t) => `${f.path} -> ${t}`));
    expect(http).toEqual([]);
  });

  it("each status column is written by its lifecycle owner only", () => {
    const owners: Record<string, string> = {
      subscriptions: "src/modules/subscriptions/transitions.ts",
      invoices: "src/modules/invoices/lifecycle.ts",
      payments: "src/modules/payments/lifecycle.ts",
      refunds: "src/modules/refunds/lifecycle.ts",
      creditGrants: "src/modules/credits/ledger.ts",
      credit_grants: "src/modules/credits/ledger.ts",
      creditNotes: "src/modules/credit-notes/lifecycle.ts",
    };
    const violations: string[] = [];
    for (const [table, owner] of Object.entries(owners)) {
      for (const f of files) {
        if (f.path === owner) continue;
        const builder = [...f.text.matchAll(new RegExp(`update\\(${table}\\)\\s*\\.set\\(([^)]*)\\)`, "g"))].some((m) => /\bstatus\b/.test(m[1]!));
        // Prepared guarded updates (src/db/prepared.ts): updateWhere(db, table, fields, match).
        const prepared = [...f.text.matchAll(new RegExp(`updateWhere\\(\\s*\\w+,\\s*${table},([^;]*?)\\{\\s*id:`, "g"))].some((m) => /\bstatus\b/.test(m[1]!));
        // The drizzle table (creditNotes) in builder calls, its SQL name (credit_notes) in raw SQL.
        const raw = new RegExp(`UPDATE\\s+${table.replace(/[A-Z]/g, (ch) => `_${ch.toLowerCase()}`)}\\s+SET[^;\`]*\\bstatus\\s*=`, "i").test(f.text);
        if (builder || raw || prepared) violations.push(`${f.path} writes ${table}.status`);
      }
    }
    expect(violations).toEqual([]);
  });
});

// --- services context (src/platform/services.ts) ---

/**
 * Files of src/modules whose `Date.now()` calls measure a duration (latency, render time) or stamp an id: real time
 * is right there, whatever clock the objects are on. In these files only `x = Date.now()` / `Date.now() - x` count
 * as measurements; any other call is still a "now" that must come from the Services clock.
 */
const DURATION_CLOCKS = new Set([
  "src/modules/health/routes.ts",
  "src/modules/health/checks.ts",
  "src/modules/gateways/service.ts",
  "src/modules/payments/collect.ts",
  "src/modules/webhook-endpoints/delivery.ts",
  "src/modules/documents/store.ts",
]);
const isDurationCall = (text: string, index: number) => /(?:started|Started)\s*=\s*$/.test(text.slice(Math.max(0, index - 40), index)) || /^Date\.now\(\)\s*-\s*\w*(?:started|Started)\b/.test(text.slice(index, index + 60));

/**
 * Files not converted to the Services context yet, with how many sites each still has. A count may only go down:
 * a new site fails, and a converted file leaves this list. The goal is an empty list.
 */
const NOT_YET_CONVERTED: { dateNow: Record<string, number>; envAndDb: Record<string, number>; queueSend: Record<string, number>; thrown: Record<string, number> } = {
  // Files whose use cases still throw ApiError (or its notFound/invalid factories) instead of returning an Outcome.
  thrown: {
  },
  dateNow: {
  },
  envAndDb: {
  },
  queueSend: {
  },
};

/** Parameter lists (one level of nested parentheses) that name both `env: Env` and `db: Db`. */
function envAndDbSignatures(text: string): number {
  let n = 0;
  for (const m of text.matchAll(/\(([^()]*(?:\([^()]*\)[^()]*)*)\)/g)) if (/\benv: Env\b/.test(m[1]!) && /\bdb: Db\b/.test(m[1]!)) n++;
  return n;
}

function overBudget(counts: Record<string, number>, budget: Record<string, number>): string[] {
  return Object.entries(counts)
    .filter(([path, n]) => n > (budget[path] ?? 0))
    .map(([path, n]) => `${path}: ${n} (allowed ${budget[path] ?? 0})`);
}

/** The files among `chosen` whose count of sites is over their budget (none allowed by default). */
function sitesOverBudget(chosen: { path: string; text: string }[], count: (f: { path: string; text: string }) => number, budget: Record<string, number>): string[] {
  const counts: Record<string, number> = {};
  for (const f of chosen) {
    const n = count(f);
    if (n) counts[f.path] = n;
  }
  return overBudget(counts, budget);
}

/** Where the HTTP ring's own errors are translated, not a use case's: Stripe-shaped errors for the drop-in routes. */
const TRANSLATES_API_ERRORS: Record<string, { sites: number; why: string }> = {
  "src/modules/ingest-compat/stripe.ts": { sites: 1, why: "renders the app's validation/auth ApiErrors in Stripe's error shape" },
};

/**
 * Sites of a module file where an expected failure is thrown as an HTTP error rather than returned: `ApiError`, the
 * ApiError factories (`lockedError(`; `notFound(`/`invalid(` when imported from platform/errors or http/problem), and
 * the `failureError(` bridge back.
 */
function thrownFailures(f: { path: string; text: string }): number {
  const code = f.text.replace(/^import[^;]*;/gm, "");
  let n = [...code.matchAll(/\bApiError\b|\bfailureError\(|\blockedError\(/g)].length;
  const factories = /^import \{([^}]*)\} from "\.\.\/\.\.\/(?:platform\/errors|http\/problem)";/m.exec(f.text)?.[1]?.split(",").map((x) => x.trim()) ?? [];
  for (const name of ["notFound", "invalid"]) if (factories.includes(name)) n += [...code.matchAll(new RegExp(`\\b${name}\\(`, "g"))].length;
  return Math.max(0, n - (TRANSLATES_API_ERRORS[f.path]?.sites ?? 0));
}

/** Other real-time reads on purpose, with how many per file: they are not "now" of any billing object. */
const REAL_TIME: Record<string, { calls: number; why: string }> = {
  "src/modules/admin/features.ts": { calls: 1, why: "the age of the per-isolate flag cache" },
  "src/modules/credits/ledger.ts": { calls: 1, why: "movement ids sort by when they were made (movementId)" },
  "src/modules/webhook-endpoints/delivery.ts": { calls: 1, why: "the age of the per-isolate any-endpoint cache (anyEnabledEndpoint)" },
};

/** `Date.now()` calls of a file that are a "now" (not a measured duration, not an allowed real-time read). */
const nowCalls = (f: { path: string; text: string }) =>
  Math.max(0, [...f.text.matchAll(/Date\.now\(\)/g)].filter((m) => !(DURATION_CLOCKS.has(f.path) && isDurationCall(f.text, m.index!))).length - (REAL_TIME[f.path]?.calls ?? 0));
const queueSends = (text: string) => [...text.matchAll(/\b\w+_QUEUE\.send(?:Batch)?\(|sendAll\(\s*[\w.]+_QUEUE\b/g)].length;

describe("the payment guard", () => {
  it("src/gateways/index.ts is the only place the application constructs a gateway (so no path reaches one around the guard)", () => {
    expect(files.length).toBeGreaterThan(50);
    const constructing = files.filter((f) => /new\s+(SandboxGateway|StripeGateway)\s*\(/.test(f.text)).map((f) => f.path);
    expect(constructing).toEqual(["src/gateways/index.ts"]);
  });
});

describe("one services context", () => {
  it("no Date.now() in src/modules: the time comes from s.clock / s.audit (durations aside)", () => {
    expect(sitesOverBudget(files.filter((f) => f.path.startsWith("src/modules/")), nowCalls, NOT_YET_CONVERTED.dateNow)).toEqual([]);
  });

  it("no function takes both env: Env and db: Db (it takes s: Services)", () => {
    // The gateway factories are what Services binds to its env and db (s.gateways).
    expect(sitesOverBudget(files.filter((f) => f.path !== "src/gateways/index.ts"), (f) => envAndDbSignatures(f.text), NOT_YET_CONVERTED.envAndDb)).toEqual([]);
  });

  it("queues are sent to through s.queues only (typed producers), not env.<X>_QUEUE", () => {
    expect(sitesOverBudget(files.filter((f) => f.path !== "src/platform/services.ts"), (f) => queueSends(f.text), NOT_YET_CONVERTED.queueSend)).toEqual([]);
  });

  it("use cases return expected failures as an Outcome (src/platform/failure.ts), not thrown ApiErrors", () => {
    expect(sitesOverBudget(files.filter((f) => f.path.startsWith("src/modules/")), thrownFailures, NOT_YET_CONVERTED.thrown)).toEqual([]);
  });

  it("the budgets name only files that still have sites (a converted file leaves the list)", () => {
    const stale = (kind: keyof typeof NOT_YET_CONVERTED, count: (f: { path: string; text: string }) => number) =>
      Object.keys(NOT_YET_CONVERTED[kind]).filter((path) => count(files.find((f) => f.path === path) ?? { path, text: "" }) === 0).map((p) => `${kind}: ${p}`);
    expect([...stale("dateNow", nowCalls), ...stale("envAndDb", (f) => envAndDbSignatures(f.text)), ...stale("queueSend", (f) => queueSends(f.text)), ...stale("thrown", thrownFailures)]).toEqual([]);
  });
});
