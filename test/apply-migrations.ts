// Runs before every integration test file. The files share one Workers runtime per vitest worker (`isolate: false`
// in vitest.config.ts: about four times faster than a runtime per file), so each file starts here from what a fresh
// runtime would give it: every migration applied, empty tables, an empty payment guard and audit anchor, an empty
// bucket, and cold isolate caches.
import { applyD1Migrations, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { dropSettingsCache } from "../src/platform/settings";
import { dropFeatureCache } from "../src/modules/admin/features";
import { dropApiKeyCache } from "../src/http/auth";
import { dropHttpMetrics } from "../src/http/metrics";
import { dropGatewayHealthCache } from "../src/modules/gateways/service";
import { forgetEndpointsCache } from "../src/modules/webhook-endpoints/delivery";
import { AUDIT_ANCHOR_NAME, forgetPendingSeal } from "../src/platform/audit";

await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);

const tables = await env.DB.prepare(
  "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name <> 'd1_migrations'",
).all<{ name: string }>();
// One transaction, foreign keys checked at its end (when every table is empty), so the order does not matter.
if (tables.results.length)
  await env.DB.batch([env.DB.prepare("PRAGMA defer_foreign_keys = ON"), ...tables.results.map((t) => env.DB.prepare(`DELETE FROM "${t.name}"`))]);

for (const [ns, name] of [
  [env.PAYMENT_GUARD, "global"],
  [env.AUDIT_ANCHOR, AUDIT_ANCHOR_NAME],
] as const) {
  // Storage emptied; a second construction over it recreates the object's tables and default rows (its live
  // instance holds nothing that outlives a call).
  await runInDurableObject(ns.get(ns.idFromName(name)) as DurableObjectStub, async (instance, state) => {
    await state.storage.deleteAll();
    new (instance.constructor as new (s: DurableObjectState, e: Env) => unknown)(state, env);
    await state.blockConcurrencyWhile(async () => {});
  });
}

for (let cursor: string | undefined; ; ) {
  const page = await env.ARCHIVE.list({ cursor, limit: 1000 });
  if (page.objects.length) await env.ARCHIVE.delete(page.objects.map((o) => o.key));
  if (!page.truncated) break;
  cursor = page.cursor;
}

dropSettingsCache();
dropHttpMetrics();
dropFeatureCache();
dropApiKeyCache();
dropGatewayHealthCache();
forgetEndpointsCache();
forgetPendingSeal();

// The worker logs a JSON line per request and invocation; vitest would carry each one out of the runtime only for
// onConsoleLog (vitest.config.ts) to drop the info ones. Drop them here instead, once per runtime. Spies on
// console.log (invocationLog in test/scale.ts) wrap this function and still see every line.
const quiet = Symbol.for("billing-tests.quiet-info-logs");
if (!(console.log as { [quiet]?: true })[quiet]) {
  const log = console.log.bind(console);
  const filtered = (...args: unknown[]) => {
    if (typeof args[0] === "string" && args[0].startsWith('{"level":"info"')) return;
    log(...args);
  };
  console.log = Object.assign(filtered, { [quiet]: true as const });
}
