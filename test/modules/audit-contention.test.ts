import { expect, it } from "vitest";
import { api, createCustomer, createPlan } from "../helpers";

it("many concurrent audited writes all land, with a gap-free chain", async () => {
  const customer = await createCustomer();
  const plan = await createPlan();
  const results = await Promise.all(Array.from({ length: 12 }, () => api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })));
  expect(results.map((r) => r.status)).toEqual(Array(12).fill(201));
  const verify = await api("GET", "/api/v1/audit/verify-integrity");
  expect(verify.body).toMatchObject({ valid: true, firstBrokenRow: null });
});
