import { eq } from "drizzle-orm";
import type { UsageMeter } from "../../durable-objects/usage-meter";
import type { JobMessage, PaymentMessage, TaskMessage, WebhookMessage } from "../../queues/messages";
import { dbOf, type Db } from "../db/client";
import { customers, invoices, testClocks } from "../db/schema";
import { chargeGateway, configuredGateways, defaultPrimary, gatewayByName, routing, type GatewayRouting } from "../gateways";
import { GuardLease, paymentGuard, withAdmission, type Admitted, type Refused } from "../gateways/guard";
import type { GatewayName, PaymentGateway } from "../gateways/types";
import type { Actor } from "../env";
import type { AuditContext } from "./audit";
import { usageMeterOf } from "./meters";
import { SYSTEM_ACTOR } from "./actor";
import { sendAll } from "./queue-send";
import { getSetting } from "./settings";
import { TrailingWrites } from "./trailing-writes";

/** A typed producer of one queue. */
export type Producer<M> = {
  send(message: M, options?: QueueSendOptions): Promise<void>;
  /** Every message, in sendBatch pages of at most 100, each page retried before it throws (platform/queue-send.ts). */
  sendAll(messages: M[], options?: QueueSendBatchOptions): Promise<number>;
};

/** What identifies the invocation in its log lines: a request id, a queue message, a cron task. */
export type LogFields = Record<string, unknown>;
export type Log = {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
};

export type Clock = {
  /** The invocation's real time, fixed once when its Services was made. */
  readonly wall: number;
  /** "Now" of objects on `testClockId`: the clock's frozen time, or the wall time off a clock (or for a clock gone). */
  at(testClockId: string | null | undefined): Promise<number>;
  /** The frozen time of `testClockId`; null off a clock or for a clock that no longer exists. */
  frozen(testClockId: string | null | undefined): Promise<number | null>;
  /** "Now" for a customer: its test clock's time, or the wall time. */
  ofCustomer(customerId: string): Promise<number>;
  /** "Now" for an invoice (and what belongs to it: payments, refunds, credit notes): its test clock's time, or the wall time. */
  ofInvoice(invoiceId: string): Promise<number>;
  /** This invocation moved `testClockId` to `frozenTime` (a test-clock advance): later reads here see the new time. */
  moved(testClockId: string, frozenTime: number): void;
};

/**
 * Everything a use case reaches, made once per request, queue message or cron task (`servicesFor`): the bindings, the
 * database, who and when (`audit`), the clock (the one place where real and test-clock time are told apart), typed
 * queue producers, meters, the payment guard, gateways, settings and a logger that tags each line with the
 * invocation. Use cases take it first (`s`); pure functions take plain values instead.
 */
export type Services = {
  readonly env: Env;
  readonly db: Db;
  readonly audit: AuditContext;
  readonly clock: Clock;
  readonly queues: {
    jobs: Producer<JobMessage>;
    payments: Producer<PaymentMessage>;
    webhooks: Producer<WebhookMessage>;
    tasks: Producer<TaskMessage>;
  };
  readonly meters: { of(subscriptionId: string): DurableObjectStub<UsageMeter> };
  readonly guard: {
    /** The one global PaymentGuard Durable Object. */
    readonly stub: ReturnType<typeof paymentGuard>;
    withAdmission<T>(what: string, move: (admission: Admitted) => Promise<T>): Promise<{ admitted: true; value: T } | Refused>;
    lease(holder?: string): GuardLease;
  };
  readonly gateways: {
    byName(name: GatewayName, held?: Admitted): Promise<PaymentGateway>;
    /** Where new charges go: the primary, or the backup while the primary is marked down. */
    charge(held?: Admitted): Promise<PaymentGateway>;
    routing(): Promise<GatewayRouting>;
    configured(): GatewayName[];
    defaultPrimary(): GatewayName;
  };
  readonly settings: { get<T extends object>(key: string, defaults: T): Promise<T> };
  /**
   * A queue batch's bookkeeping writes, written once when its messages are done (platform/trailing-writes.ts); null
   * outside a queue batch (a request, a cron task), where such a write goes out at once.
   */
  readonly trailing: TrailingWrites | null;
  readonly log: Log;
  /** This context with its log lines carrying `fields` too. */
  withLog(fields: LogFields): Services;
  /**
   * This context in the time of objects on `testClockId`: `audit.now` becomes the clock's time. A context whose `now`
   * a caller already set (not the wall clock) is left alone, as is one off a clock.
   */
  inClockOf(testClockId: string | null | undefined): Promise<Services>;
  /** As `inClockOf`, for an object that belongs to an invoice (a payment, a refund, a credit note). */
  inClockOfInvoice(invoiceId: string): Promise<Services>;
  /** This context acting at `now` (a time the caller decided: a message's, a cron trigger's, a clock's step). */
  withNow(now: number): Services;
  /** This context acting as `actor` (a component's own system actor), at the same time. */
  as(actor: Actor): Services;
  /** This context with `audit` in place of its own (a step of a run: its actor and request, at the step's time). */
  withAudit(audit: AuditContext): Services;
};

const producer = <M>(queue: Queue): Producer<M> => ({
  send: async (message, options) => {
    await (options ? queue.send(message, options) : queue.send(message));
  },
  sendAll: (messages, options) => sendAll(queue, messages, options),
});

/** Typed producers of the four queues (what `s.queues` holds), for a platform hook that runs with only `env`. */
export const queuesOf = (env: Env): Services["queues"] => ({
  jobs: producer(env.JOB_QUEUE),
  payments: producer(env.PAYMENT_QUEUE),
  webhooks: producer(env.WEBHOOK_QUEUE),
  tasks: producer(env.TASK_QUEUE),
});



function logger(fields: LogFields): Log {
  const line = (level: "info" | "warn" | "error") => (msg: string, extra?: LogFields) => console.log(JSON.stringify({ level, msg, ...fields, ...extra }));
  return { info: line("info"), warn: line("warn"), error: line("error") };
}

/** The parts of a Services its derived contexts (another `now`, more log fields) share: one clock memo, one of each stub. */
type Shared = { env: Env; db: Db; clock: Clock; queues: Services["queues"]; meters: Services["meters"]; guard: Services["guard"]; gateways: Services["gateways"]; settings: Services["settings"]; trailing: TrailingWrites | null };

function shared(env: Env, wall: number, trailing: TrailingWrites | null): Shared {
  const db = dbOf(env);
  const frozenOf = new Map<string, Promise<number | null>>();
  const frozen = (id: string | null | undefined): Promise<number | null> => {
    if (!id) return Promise.resolve(null);
    let t = frozenOf.get(id);
    if (!t) {
      t = db
        .select({ t: testClocks.frozenTime })
        .from(testClocks)
        .where(eq(testClocks.id, id))
        .get()
        .then((r) => r?.t ?? null);
      frozenOf.set(id, t);
      // A failed read is not remembered: the next caller asks again.
      t.catch(() => frozenOf.delete(id));
    }
    return t;
  };
  const at = async (id: string | null | undefined) => (await frozen(id)) ?? wall;
  const clock: Clock = {
    wall,
    at,
    frozen,
    ofCustomer: async (id) => at((await db.select({ c: customers.testClockId }).from(customers).where(eq(customers.id, id)).get())?.c),
    ofInvoice: async (id) => at((await db.select({ c: invoices.testClockId }).from(invoices).where(eq(invoices.id, id)).get())?.c),
    moved: (id, frozenTime) => void frozenOf.set(id, Promise.resolve(frozenTime)),
  };
  let guardStub: ReturnType<typeof paymentGuard> | undefined;
  return {
    env,
    db,
    clock,
    queues: queuesOf(env),
    meters: { of: (subscriptionId) => usageMeterOf(env, subscriptionId) },
    guard: {
      get stub() {
        return (guardStub ??= paymentGuard(env));
      },
      withAdmission: (what, move) => withAdmission(env, what, move),
      lease: (holder) => new GuardLease(env, holder),
    },
    gateways: {
      byName: (name, held) => gatewayByName(env, db, name, held),
      charge: (held) => chargeGateway(env, db, held),
      routing: () => routing(env, db),
      configured: () => configuredGateways(env),
      defaultPrimary: () => defaultPrimary(env),
    },
    settings: { get: (key, defaults) => getSetting(db, key, defaults) },
    trailing,
  };
}

function build(base: Shared, given: AuditContext, fields: LogFields): Services {
  // What the context's changes record; `clockOf` lets commit() stamp events about test-clock objects in their
  // clock's time through this context's clock (memoized, and told when an advance moves it).
  const audit: AuditContext = { ...given, clockOf: (id) => base.clock.frozen(id) };
  const s: Services = {
    ...base,
    audit,
    log: logger(fields),
    withLog: (more) => build(base, audit, { ...fields, ...more }),
    as: (actor) => build(base, { ...audit, actor }, fields),
    withAudit: (next) => build(base, next, fields),
    withNow: (now) => {
      const { wallClock: _, ...rest } = audit;
      return build(base, { ...rest, now }, fields);
    },
    inClockOf: async (testClockId) => {
      if (!testClockId || audit.wallClock !== audit.now) return s;
      const frozen = await base.clock.frozen(testClockId);
      return frozen === null ? s : build(base, { ...audit, now: frozen }, fields);
    },
    inClockOfInvoice: async (invoiceId) => {
      if (audit.wallClock !== audit.now) return s;
      const inv = await base.db.select({ c: invoices.testClockId }).from(invoices).where(eq(invoices.id, invoiceId)).get();
      return s.inClockOf(inv?.c ?? null);
    },
  };
  return s;
}

/**
 * The Services of one invocation. `audit` is who acts and when (`now`; with `wallClock` equal to it when "now" is
 * the request's real time, so objects on a test clock take their clock's time); `fields` tag every log line (the
 * request id, the queue message, the cron task). Made in three places only: HTTP (`services(c)`), the queue
 * consumer (one per message) and the cron task runner.
 */
export function servicesFor(env: Env, audit: AuditContext, fields: LogFields = {}, trailing: TrailingWrites | null = null): Services {
  const wall = audit.wallClock ?? Date.now();
  return build(shared(env, wall, trailing), audit, { ...(audit.requestId ? { requestId: audit.requestId } : {}), ...fields });
}

/**
 * The Services of one queue message (queues/dispatch.ts makes one per message): the system acting now, with the
 * batch's trailing writes.
 */
export const messageServices = (env: Env, fields: LogFields, trailing: TrailingWrites | null = null): Services => servicesFor(env, { actor: SYSTEM_ACTOR, now: Date.now() }, fields, trailing);

/** The trailing writes of one queue batch (written by the consumer when the batch's messages are done). */
export const trailingWritesFor = (env: Env): TrailingWrites => new TrailingWrites(() => dbOf(env));
