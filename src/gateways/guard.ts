import { sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { PAYMENTS_MODE_KEY, type Admission, type Lease } from "../../durable-objects/payment-guard";
import type { Db } from "../db/client";
import { batchAssertions, settings } from "../db/schema";
import { ApiError } from "../platform/errors";
import { fail } from "../platform/failure";
import { asGatewayCall } from "../db/round-trips";
import { builtOnce } from "../db/prepared";
import type { PaymentGateway } from "./types";

/** The one global PaymentGuard (a Durable Object): every movement of money at a gateway is admitted by it first. */
export const paymentGuard = (env: Env) => env.PAYMENT_GUARD.get(env.PAYMENT_GUARD.idFromName("global"));

/** Proof that the guard let a caller move money; valid until the caller releases it. */
export type Admitted = Extract<Admission, { admitted: true }>;
export type Refused = Extract<Admission, { admitted: false }>;

const lockedDetail = (r: Refused) => `payments are ${r.mode === "frozen" ? "frozen" : "in queue mode"}: ${r.reason ?? "no reason given"}`;

/** The 423 a direct call gets while payments are frozen or in queue mode, with the operator's reason. */
export function lockedError(r: Refused): ApiError {
  return new ApiError("locked", lockedDetail(r), [], { "retry-after": "60" });
}

/** The same refusal as a use case's failure (423 with Retry-After), for a use case that returns an Outcome. */
export function lockedFailure(r: Refused) {
  const e = lockedError(r);
  return fail("locked", e.detail, undefined, e.headers);
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
 * Admission for a queue consumer's batch without a guard round-trip pair per charge: one lease (one call) covers
 * every charge the batch starts within the lease's window; a new lease is asked for after it, and a lease is
 * released once the charges started under it finished. The freeze guarantee is the guard's: see `PaymentGuard.lease`.
 * `release()` at the end of the batch gives back what is still held.
 */
type Held = { lease: Lease; active: number };

export class GuardLease {
  private current: Held | null = null;
  /**
   * The lease request in flight and the charges waiting on it: concurrent charges of one batch share one request, and
   * all of them are counted into the lease it returns before any of them runs, so it cannot be released under them.
   */
  private asking: { waiters: number; result: Promise<Held | Refused> } | null = null;
  /** Guard calls made (lease requests and releases): the round trips this saves are the point. */
  calls = 0;

  constructor(
    private readonly env: Env,
    private readonly holder = "payments consumer",
  ) {}

  /** Runs `move` under the held lease (or a fresh one); refused like `withAdmission` when the guard refuses a lease. */
  async run<T>(what: string, move: (admission: Admitted) => Promise<T>): Promise<{ admitted: true; value: T } | Refused> {
    const held = await this.hold(what);
    if (!("lease" in held)) return held;
    // `hold` counted this charge in; it counts out when the move is done.
    try {
      return { admitted: true, value: await move(held.lease) };
    } finally {
      held.active--;
      if (this.current !== held && held.active === 0) await this.releaseToken(held.lease.token);
    }
  }

  /**
   * The current lease with this charge counted in, or a new one. A charge waiting on a request uses the lease that
   * request returned even if its start window has passed meanwhile (a slow guard): the lease stays held until the
   * charge ends, and the D1 check in the charge's attempt batch (`unlessPaymentsStopped`) is what stops a charge once
   * payments are frozen. One request per expiry, never a loop of them.
   */
  private hold(what: string): Promise<Held | Refused> {
    const held = this.current;
    if (held && Date.now() < held.lease.startBy) {
      held.active++;
      return Promise.resolve(held);
    }
    let pending = this.asking;
    if (!pending) {
      this.current = null;
      const request: { waiters: number; result: Promise<Held | Refused> } = { waiters: 0, result: Promise.resolve(null as never) };
      request.result = (async (): Promise<Held | Refused> => {
        try {
          if (held) await this.retire(held);
          this.calls++;
          const granted = await paymentGuard(this.env).lease(`${this.holder}: ${what}`);
          if (!granted.admitted) return granted;
          return (this.current = { lease: granted as Lease, active: request.waiters });
        } finally {
          if (this.asking === request) this.asking = null;
        }
      })();
      this.asking = pending = request;
    }
    pending.waiters++;
    return pending.result;
  }

  private async retire(held: Held) {
    if (held.active === 0) await this.releaseToken(held.lease.token);
  }

  private async releaseToken(token: string) {
    this.calls++;
    // A release that fails is not the batch's failure: the lease then ends with the guard's in-flight TTL.
    await paymentGuard(this.env)
      .release(token)
      .catch((e: unknown) => console.log(JSON.stringify({ level: "warn", msg: "payment guard lease release failed", error: String(e) })));
  }

  /** Gives back the current lease (call when the batch is done; charges still running keep theirs until they finish). */
  async release(): Promise<void> {
    const held = this.current;
    this.current = null;
    if (held && held.active === 0) await this.releaseToken(held.lease.token);
  }
}

/**
 * A statement for the batch that marks a charge as started: aborts the batch (an assertion failure) while D1's copy
 * of the payment mode is not normal. With the guard's own admission (per call or leased) this makes a freeze stop
 * every charge that had not started when it was written, at no extra round trip.
 */
export function unlessPaymentsStopped(db: Db): BatchItem<"sqlite"> {
  return paymentsStoppedAssertion(db, {})[0];
}
// Built by drizzle once per isolate: in every charge's attempt batch.
const paymentsStoppedAssertion = builtOnce((db: Db) => [
  db
    .insert(batchAssertions)
    .select(sql`SELECT 0 WHERE EXISTS (SELECT 1 FROM ${settings} WHERE ${settings.key} = ${PAYMENTS_MODE_KEY} AND json_extract(${settings.value}, '$.mode') != 'normal')`),
] as const);

/** How a charge is admitted: per call (`withAdmission`), or under a consumer's `GuardLease`. */
export type Admit = <T>(what: string, move: (admission: Admitted) => Promise<T>) => Promise<{ admitted: true; value: T } | Refused>;

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
    charge: (req) => move(`charge ${req.idempotencyKey}`, () => asGatewayCall(() => inner.charge(req))),
    refund: (req) => move(`refund ${req.idempotencyKey}`, () => asGatewayCall(() => inner.refund(req))),
    retrieve: (id) => inner.retrieve(id),
    balanceTransactions: (from, to) => inner.balanceTransactions(from, to),
    balanceTransactionsPage: (from, to, startingAfter, limit) => inner.balanceTransactionsPage(from, to, startingAfter, limit),
    health: () => inner.health(),
  };
}
