import type { Admission } from "../../durable-objects/payment-guard";
import { ApiError } from "../platform/errors";
import type { PaymentGateway } from "./types";

/** The one global PaymentGuard (a Durable Object): every movement of money at a gateway is admitted by it first. */
export const paymentGuard = (env: Env) => env.PAYMENT_GUARD.get(env.PAYMENT_GUARD.idFromName("global"));

/** Proof that the guard let a caller move money; valid until the caller releases it. */
export type Admitted = Extract<Admission, { admitted: true }>;
export type Refused = Extract<Admission, { admitted: false }>;

/** The 423 a direct call gets while payments are frozen or in queue mode, with the operator's reason. */
export function lockedError(r: Refused): ApiError {
  const state = r.mode === "frozen" ? "frozen" : "in queue mode";
  return new ApiError("locked", `payments are ${state}: ${r.reason ?? "no reason given"}`, [], { "retry-after": "60" });
}

/**
 * Asks the guard for `what`; when admitted, runs `move` holding the admission and releases it whatever happens.
 * When refused, `move` never runs and the refusal is returned for the caller to park, retry later or answer 423.
 */
export async function withAdmission<T>(env: Env, what: string, move: (admission: Admitted) => Promise<T>): Promise<{ admitted: true; value: T } | Refused> {
  const guard = paymentGuard(env);
  const admission = await guard.admit(what);
  if (!admission.admitted) return admission;
  try {
    return { admitted: true, value: await move(admission) };
  } finally {
    await guard.release(admission.token);
  }
}

/**
 * `inner` with its money-moving methods behind the guard. With `held` (an admission the caller holds for the whole
 * operation) they run under it; without, each charge or refund is admitted on its own and refused with a 423
 * `ApiError` while payments are frozen or in queue mode. Reads (retrieve, balance transactions, health) are not
 * guarded: they move nothing.
 */
export function guarded(env: Env, inner: PaymentGateway, held?: Admitted): PaymentGateway {
  const move = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
    if (held) return run();
    const r = await withAdmission(env, what, run);
    if (!r.admitted) throw lockedError(r);
    return r.value;
  };
  return {
    name: inner.name,
    charge: (req) => move(`charge ${req.idempotencyKey}`, () => inner.charge(req)),
    refund: (req) => move(`refund ${req.idempotencyKey}`, () => inner.refund(req)),
    retrieve: (id) => inner.retrieve(id),
    balanceTransactions: (from, to) => inner.balanceTransactions(from, to),
    health: () => inner.health(),
  };
}
