import { afterEach, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { dbOf } from "../../src/db/client";
import { gatewayByName } from "../../src/gateways";
import { paymentGuard, withAdmission } from "../../src/gateways/guard";
import { newId } from "../../src/lib/ids";

const db = dbOf(env);
const ledgerRows = async () => (await env.DB.prepare("SELECT count(*) AS n FROM sandbox_ledger").first<{ n: number }>())!.n;
const charge = () => ({ amountMinor: 100, currency: "USD", customerId: "c", paymentMethod: "pm_card_visa", invoiceId: "i", idempotencyKey: newId("k") });

afterEach(async () => {
  await paymentGuard(env).setMode("normal", null, "test");
});

describe("the gateway accessor", () => {
  it("moves money only when the guard admits it: charge and refund refused (423) in queue mode, reads still work", async () => {
    const sandbox = await gatewayByName(env, db, "sandbox");
    const paid = await sandbox.charge(charge());
    expect(paid.status).toBe("succeeded");
    await paymentGuard(env).setMode("queue", "maintenance", "test");
    const before = await ledgerRows();
    await expect(sandbox.charge(charge())).rejects.toMatchObject({ status: 423, detail: expect.stringContaining("maintenance") });
    await expect(sandbox.refund({ gatewayPaymentId: paid.gatewayPaymentId!, amountMinor: 100, currency: "USD", idempotencyKey: newId("r") })).rejects.toMatchObject({ status: 423 });
    expect(await ledgerRows()).toBe(before);
    expect(await sandbox.retrieve(paid.gatewayPaymentId!)).toMatchObject({ amountRefunded: 0 });
    expect((await sandbox.health()).ok).toBe(true);
  });

  it("under an admission the caller holds, runs without asking again, and the admission is released after", async () => {
    const r = await withAdmission(env, "test", async (admission) => {
      const sandbox = await gatewayByName(env, db, "sandbox", admission);
      expect((await paymentGuard(env).state()).inFlight).toBe(1);
      return sandbox.charge(charge());
    });
    expect(r).toMatchObject({ admitted: true, value: { status: "succeeded" } });
    expect((await paymentGuard(env).state()).inFlight).toBe(0);
    await paymentGuard(env).setMode("frozen", "incident", "test");
    let ran = false;
    expect(await withAdmission(env, "test", async () => (ran = true))).toEqual({ admitted: false, mode: "frozen", reason: "incident" });
    expect(ran).toBe(false);
  });

  // That src/gateways/index.ts is the only place constructing a gateway: test/unit/architecture.test.ts (a source scan).
});
