import { AsyncLocalStorage } from "node:async_hooks";

/**
 * D1 round trips (a batch is one round trip of several statements) inside a `countD1` scope, counted on the D1
 * binding `dbOf` hands to drizzle: what a use case costs in latency, for tests that hold a path to a budget. The
 * per-invocation limits (queries per invocation, as Cloudflare counts them) are src/platform/limits.ts's.
 */
export type D1Count = { roundTrips: number; statements: number; /** of the sandbox gateway's own ledger (a remote gateway in production) */ gatewayStatements: number };

const scope = new AsyncLocalStorage<D1Count>();

/** Runs `fn` with a fresh count; the count is returned beside its value. Nested scopes count into the innermost. */
export async function countD1<T>(fn: () => Promise<T>): Promise<{ value: T; count: D1Count }> {
  const count: D1Count = { roundTrips: 0, statements: 0, gatewayStatements: 0 };
  const value = await scope.run(count, fn);
  return { value, count };
}

/**
 * Runs a gateway call: the sandbox gateway keeps its ledger in D1 where Stripe would be a remote API, so its queries
 * are counted apart (`gatewayStatements`), not as the engine's round trips.
 */
export async function asGatewayCall<T>(fn: () => Promise<T>): Promise<T> {
  const parent = scope.getStore();
  if (!parent) return fn();
  const own: D1Count = { roundTrips: 0, statements: 0, gatewayStatements: 0 };
  try {
    return await scope.run(own, fn);
  } finally {
    parent.gatewayStatements += own.statements + own.gatewayStatements;
  }
}

const add = (statements: number) => {
  const c = scope.getStore();
  if (!c) return;
  c.roundTrips++;
  c.statements += statements;
};

const real = new WeakMap<object, D1PreparedStatement>();

function wrapStatement(s: D1PreparedStatement): D1PreparedStatement {
  const w = new Proxy(s, {
    get(target, prop) {
      if (prop === "bind") return (...args: unknown[]) => wrapStatement(target.bind(...args));
      if (prop === "first" || prop === "run" || prop === "all" || prop === "raw") {
        const f = (target as unknown as Record<string, (...a: unknown[]) => unknown>)[prop]!;
        return (...args: unknown[]) => {
          add(1);
          return f.apply(target, args);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  real.set(w, s);
  return w;
}

/** The D1 binding with every query counted into the current scope (outside any scope it only passes through). */
export function countedD1(db: D1Database): D1Database {
  return new Proxy(db, {
    get(target, prop) {
      if (prop === "prepare") return (query: string) => wrapStatement(target.prepare(query));
      if (prop === "batch") {
        return (statements: D1PreparedStatement[]) => {
          add(statements.length);
          return target.batch(statements.map((s) => real.get(s) ?? s));
        };
      }
      if (prop === "exec") {
        return (query: string) => {
          add(1);
          return target.exec(query);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
