import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import entry from "../../src/index";
import { finalizeInvoice } from "../../src/modules/invoices/finalize";
import { SYSTEM_ACTOR } from "../../src/platform/actor";
import { api, createCustomer, servicesOf, tokenFor } from "../helpers";

const worker: Required<Pick<ExportedHandler<Env>, "fetch">> = entry;
const noQueue = { send: async () => undefined, sendBatch: async () => undefined } as unknown as Queue;

describe("invoice numbers", () => {
  it("are sequential and gap-free per year even when drafts are finalized concurrently", async () => {
    const customer = await createCustomer();
    const now = Date.UTC(2093, 5, 1);
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const id = `inv_num_${i}`;
      ids.push(id);
      await env.DB.prepare(
        "INSERT INTO invoices (id, customer_id, status, billing_reason, currency, period_start, period_end, subtotal, discount, tax, total, amount_paid, amount_due, attempt_count, generation_key, created_at, updated_at) VALUES (?, ?, 'draft', 'manual', 'USD', ?, ?, 100, 0, 0, 100, 0, 100, 0, ?, ?, ?)",
      )
        .bind(id, customer.id, now, now + 1, `test:${id}`, now, now)
        .run();
    }
    const e = { ...env, PAYMENT_QUEUE: noQueue, JOB_QUEUE: noQueue, WEBHOOK_QUEUE: noQueue } as Env;
    const results = await Promise.all(ids.map((id) => finalizeInvoice(servicesOf({ actor: SYSTEM_ACTOR, now }, e), id)));
    const numbers = results.map((r) => r!.number!).sort();
    expect(numbers).toEqual(Array.from({ length: 8 }, (_, i) => `INV-2093-${String(i + 1).padStart(6, "0")}`));
    // Finalizing again takes no number: a draft is finalized once.
    expect(await finalizeInvoice(servicesOf({ actor: SYSTEM_ACTOR, now }, e), ids[0]!)).toBeNull();
    const seq = await env.DB.prepare("SELECT last_number FROM invoice_number_sequences WHERE year = 2093").first<{ last_number: number }>();
    expect(seq!.last_number).toBe(8);
  });
});

describe("test clocks in production", () => {
  it("are refused when TEST_CLOCKS is off", async () => {
    const ctx = createExecutionContext();
    const headers = { authorization: `Bearer ${await tokenFor("admin")}`, "content-type": "application/json" };
    const res = await worker.fetch(
      new Request("http://localhost/api/v1/test-clocks", { method: "POST", headers, body: JSON.stringify({ frozenTime: "2024-01-01T00:00:00Z" }) }),
      { ...env, TEST_CLOCKS: "off" } as unknown as Env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { detail: string }).detail).toContain("TEST_CLOCKS=off");
    expect((await api("POST", "/api/v1/test-clocks", { body: { frozenTime: "2024-01-01T00:00:00Z" } })).status).toBe(201);
  });
});
