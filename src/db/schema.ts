import { sql } from "drizzle-orm";
import { check, index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import type { Actor } from "../env";

// Times are epoch milliseconds (UTC). Money is integer minor units next to its ISO-4217 currency.

export const customers = sqliteTable(
  "customers",
  {
    id: text("id").primaryKey(),
    email: text("email").notNull(),
    name: text("name"),
    currency: text("currency").notNull(),
    country: text("country"),
    region: text("region"),
    taxExempt: integer("tax_exempt", { mode: "boolean" }).notNull().default(false),
    /** Credit owed to the customer (minor units of its currency), from invoices that came out negative; used up by later invoices. */
    creditBalance: integer("credit_balance").notNull().default(0),
    taxCertificateId: text("tax_certificate_id"),
    taxCertificateExpiresAt: integer("tax_certificate_expires_at"),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, string>>().notNull().default(sql`'{}'`),
    testClockId: text("test_clock_id"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    // --- events ---
    /** Soft deletion (DELETE /api/v1/customers/:id): still readable with its invoices, left out of lists by default. */
    deletedAt: integer("deleted_at"),
  },
  (t) => [index("customers_created_idx").on(t.createdAt, t.id), index("customers_email_idx").on(t.email)],
);

/** One row per plan version; `isLatest` marks the version new subscriptions get. */
export const plans = sqliteTable(
  "plans",
  {
    id: text("id").notNull(),
    version: integer("version").notNull(),
    isLatest: integer("is_latest", { mode: "boolean" }).notNull(),
    name: text("name").notNull(),
    currency: text("currency").notNull(),
    interval: text("interval", { enum: ["day", "week", "month", "year"] }).notNull(),
    intervalCount: integer("interval_count").notNull(),
    trialDays: integer("trial_days").notNull().default(0),
    prices: text("prices", { mode: "json" }).$type<StoredPrice[]>().notNull(),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, string>>().notNull().default(sql`'{}'`),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.id, t.version] }), index("plans_latest_idx").on(t.isLatest, t.createdAt, t.id)],
);

export type StoredFlatPrice = { id: string; type: "flat"; amountMinor: number; billing: "advance" | "arrears" };
export type StoredTier = { upTo: number | null; unitAmount: string; flatAmount?: string };
export type StoredMeteredPrice = {
  id: string;
  type: "metered";
  meterId: string;
  aggregation: "sum" | "count" | "max" | "unique_count" | "latest";
  aggregationField?: string;
  pricingModel: "per_unit" | "graduated" | "volume" | "package";
  unitAmount?: string;
  tiers?: StoredTier[];
  packageSize?: number;
  packageAmount?: string;
  freeUnits?: number;
  /** Drop-in ingestion: the Stripe `event_name` / CloudEvents `type` that feeds this meter (default: meterId). */
  eventName?: string;
  /** Drop-in ingestion: JSON path of the quantity in a CloudEvent's data / Stripe payload, e.g. `$.tokens` (default `$.value`). */
  valueProperty?: string;
  /** Drop-in ingestion: metadata key → JSON path in the event's data, kept as the event's metadata. */
  groupBy?: Record<string, string>;
  /**
   * Usage alert thresholds (decimal strings in the meter's units) that apply to every subscription on the plan:
   * `usage.threshold_crossed` once per period each, decided in the meter like a subscription's own alerts.
   */
  alertThresholds?: string[];
};
export type StoredPrice = StoredFlatPrice | StoredMeteredPrice;

export const subscriptionStatuses = ["trialing", "active", "past_due", "paused", "canceled"] as const;
export type SubscriptionStatus = (typeof subscriptionStatuses)[number];

export const subscriptions = sqliteTable(
  "subscriptions",
  {
    id: text("id").primaryKey(),
    customerId: text("customer_id").notNull().references(() => customers.id),
    planId: text("plan_id").notNull(),
    planVersion: integer("plan_version").notNull(),
    status: text("status", { enum: subscriptionStatuses }).notNull(),
    quantity: integer("quantity").notNull().default(1),
    paymentMethod: text("payment_method"),
    currency: text("currency").notNull(),
    billingAnchor: integer("billing_anchor").notNull(),
    currentPeriodStart: integer("current_period_start").notNull(),
    currentPeriodEnd: integer("current_period_end").notNull(),
    trialEnd: integer("trial_end"),
    cancelAtPeriodEnd: integer("cancel_at_period_end", { mode: "boolean" }).notNull().default(false),
    canceledAt: integer("canceled_at"),
    pausedUntil: integer("paused_until"),
    testClockId: text("test_clock_id"),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, string>>().notNull().default(sql`'{}'`),
    pauseReason: text("pause_reason"),
    cancelReason: text("cancel_reason"),
    cancelFeedback: text("cancel_feedback"),
    endedAt: integer("ended_at"),
    trialConvertedAt: integer("trial_converted_at"),
    /** A plan change scheduled for `pendingChangeAt` (the next billing cycle or a given date). */
    pendingPlanId: text("pending_plan_id"),
    pendingPlanVersion: integer("pending_plan_version"),
    pendingQuantity: integer("pending_quantity"),
    pendingChangeAt: integer("pending_change_at"),
    pendingProrate: integer("pending_prorate", { mode: "boolean" }),
    /** Percentage off every invoice line before tax, as a decimal string ("10" = 10 %). */
    discountPercent: text("discount_percent"),
    /** The discount applies to invoices billed at or before this instant; null: until removed. */
    discountUntil: integer("discount_until"),
    /** The current plan's arrears fees run from here in the current period (a prorated change); null: the period start. */
    arrearsFrom: integer("arrears_from"),
    /** Bumped on every change; the usage meter acknowledges the version it holds. */
    configVersion: integer("config_version").notNull().default(1),
    meterSyncedVersion: integer("meter_synced_version").notNull().default(0),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    // --- docfix ---
    /** The current discount as the subscription object shows it: a mirror of its discounts row, written with it. */
    discount: text("discount", { mode: "json" }).$type<SubscriptionDiscountMirror>(),
    // --- conventions ---
    /** The scheduled change's prorations are invoiced when it takes effect (prorationBehavior always_invoice). */
    pendingInvoiceNow: integer("pending_invoice_now", { mode: "boolean" }),
  },
  (t) => [
    index("subscriptions_customer_idx").on(t.customerId, t.createdAt),
    index("subscriptions_status_idx").on(t.status, t.createdAt),
    index("subscriptions_created_idx").on(t.createdAt, t.id),
    index("subscriptions_period_end_idx").on(t.currentPeriodEnd),
  ],
);

export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    /** First characters of the key, to recognise it in listings; never enough to use it. */
    prefix: text("prefix").notNull(),
    keyHash: text("key_hash").notNull(),
    scopes: text("scopes", { mode: "json" }).$type<string[]>().notNull(),
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
    revokedAt: integer("revoked_at"),
  },
  (t) => [uniqueIndex("api_keys_hash_idx").on(t.keyHash)],
);

export const idempotencyKeys = sqliteTable(
  "idempotency_keys",
  {
    /** Scoped by actor: `${actor}:${key}`. */
    scopedKey: text("scoped_key").primaryKey(),
    requestHash: text("request_hash").notNull(),
    /** in_flight → committed (its change is in D1, written in the change's own batch) → done (response stored). */
    state: text("state", { enum: ["in_flight", "committed", "done"] }).notNull(),
    lockedUntil: integer("locked_until").notNull(),
    responseStatus: integer("response_status"),
    responseBody: text("response_body"),
    responseContentType: text("response_content_type"),
    createdAt: integer("created_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
  },
  (t) => [index("idempotency_expires_idx").on(t.expiresAt)],
);

export const auditLog = sqliteTable(
  "audit_log",
  {
    /** Gap-free sequence assigned by SQLite inside the writing batch (max + 1); the chain is ordered by it. */
    seq: integer("seq").primaryKey(),
    id: text("id").notNull(),
    at: integer("at").notNull(),
    actor: text("actor").notNull(),
    actorRole: text("actor_role").notNull(),
    action: text("action").notNull(),
    targetType: text("target_type").notNull(),
    targetId: text("target_id").notNull(),
    requestId: text("request_id"),
    before: text("before"),
    after: text("after"),
    reason: text("reason"),
    /** HMAC-SHA-256(AUDIT_HMAC_KEY, canonical content), written with the row; null only on a legacy row not yet adopted. */
    mac: text("mac"),
    /** HMAC-SHA-256(AUDIT_HMAC_KEY, previous chain | seq | mac), written by the AuditAnchor sealer; null until sealed. */
    chain: text("chain"),
    /** The unkeyed SHA-256 chain of rows written before migration 0008; null on later rows. */
    prevHash: text("prev_hash"),
    hash: text("hash"),
  },
  (t) => [
    index("audit_action_idx").on(t.action, t.at),
    index("audit_actor_idx").on(t.actor, t.at),
    index("audit_target_idx").on(t.targetId, t.at),
    index("audit_at_idx").on(t.at),
  ],
);

/** Per-period meter aggregates flushed by the UsageMeter objects; analytics and invoices read these. */
export const usageRollups = sqliteTable(
  "usage_rollups",
  {
    subscriptionId: text("subscription_id").notNull(),
    meterId: text("meter_id").notNull(),
    periodStart: integer("period_start").notNull(),
    periodEnd: integer("period_end").notNull(),
    value: text("value").notNull(),
    eventCount: integer("event_count").notNull(),
    closed: integer("closed", { mode: "boolean" }).notNull().default(false),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.subscriptionId, t.meterId, t.periodStart] })],
);

/**
 * Usage alerts: a subscription's meter emits `usage.threshold_crossed` once per period when the meter's aggregate
 * reaches `threshold` (decided in the UsageMeter Durable Object, which gets the alerts pushed with its config).
 */
export const usageAlerts = sqliteTable(
  "usage_alerts",
  {
    id: text("id").primaryKey(),
    subscriptionId: text("subscription_id").notNull(),
    customerId: text("customer_id").notNull(),
    meterId: text("meter_id").notNull(),
    /** Decimal string in the meter's units (up to 12 decimals), > 0. */
    threshold: text("threshold").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("usage_alerts_subscription_idx").on(t.subscriptionId, t.createdAt)],
);

/**
 * Never holds a row. `assertChanged()` inserts into it only when the previous statement of a batch changed
 * nothing; the CHECK then fails and D1 rolls the whole batch back (D1 has no interactive transactions).
 */
export const batchAssertions = sqliteTable("batch_assertions", { ok: integer("ok").notNull() }, (t) => [
  check("batch_assertion_failed", sql`${t.ok} = 1`),
]);

/** Messages that exhausted their retries on any queue, kept for inspection and replay. */
export const deadLetters = sqliteTable(
  "dead_letters",
  {
    id: text("id").primaryKey(),
    messageId: text("message_id").notNull(),
    body: text("body").notNull(),
    attempts: integer("attempts").notNull(),
    receivedAt: integer("received_at").notNull(),
    replayedAt: integer("replayed_at"),
  },
  (t) => [uniqueIndex("dead_letters_message_idx").on(t.messageId), index("dead_letters_received_idx").on(t.receivedAt)],
);

export const testClocks = sqliteTable("test_clocks", {
  id: text("id").primaryKey(),
  name: text("name"),
  frozenTime: integer("frozen_time").notNull(),
  status: text("status", { enum: ["ready", "advancing"] }).notNull(),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/** Tax rate history: the rate in force at an instant is the latest `effectiveFrom` at or before it. */
export const taxRates = sqliteTable(
  "tax_rates",
  {
    id: text("id").primaryKey(),
    jurisdiction: text("jurisdiction").notNull(),
    /** Decimal fraction, e.g. "0.08875". */
    rate: text("rate").notNull(),
    effectiveFrom: integer("effective_from").notNull(),
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [uniqueIndex("tax_rates_jurisdiction_from_idx").on(t.jurisdiction, t.effectiveFrom)],
);

export const invoiceStatuses = ["draft", "open", "paid", "void", "uncollectible"] as const;
export type InvoiceStatus = (typeof invoiceStatuses)[number];

export const invoices = sqliteTable(
  "invoices",
  {
    id: text("id").primaryKey(),
    /** Assigned at finalization, gap-free per year: INV-2026-000001. */
    number: text("number"),
    customerId: text("customer_id").notNull(),
    subscriptionId: text("subscription_id"),
    status: text("status", { enum: invoiceStatuses }).notNull(),
    billingReason: text("billing_reason", { enum: ["subscription_create", "subscription_cycle", "subscription_update", "manual"] }).notNull(),
    currency: text("currency").notNull(),
    periodStart: integer("period_start").notNull(),
    periodEnd: integer("period_end").notNull(),
    subtotal: integer("subtotal").notNull(),
    discount: integer("discount").notNull(),
    tax: integer("tax").notNull(),
    total: integer("total").notNull(),
    amountPaid: integer("amount_paid").notNull().default(0),
    /** Customer credit used to pay part of this invoice (amountDue = total − creditApplied). */
    creditApplied: integer("credit_applied").notNull().default(0),
    amountDue: integer("amount_due").notNull(),
    taxJurisdiction: text("tax_jurisdiction"),
    taxRate: text("tax_rate"),
    dueAt: integer("due_at"),
    finalizedAt: integer("finalized_at"),
    paidAt: integer("paid_at"),
    voidedAt: integer("voided_at"),
    voidReason: text("void_reason"),
    /** Collection attempts so far and the last failure, for retry-failed. */
    attemptCount: integer("attempt_count").notNull().default(0),
    lastError: text("last_error"),
    /** Makes generation idempotent: one invoice per subscription, reason and period. */
    generationKey: text("generation_key").notNull(),
    archiveKey: text("archive_key"),
    archivedAt: integer("archived_at"),
    testClockId: text("test_clock_id"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    // --- docfix ---
    /** The token of the invoice's current hosted link (invoice_links holds its hash, expiry and revocation); null: none. */
    hostedToken: text("hosted_token"),
  },
  (t) => [
    uniqueIndex("invoices_generation_idx").on(t.generationKey),
    uniqueIndex("invoices_number_idx").on(t.number),
    index("invoices_customer_idx").on(t.customerId, t.createdAt),
    index("invoices_subscription_idx").on(t.subscriptionId, t.createdAt),
    index("invoices_status_idx").on(t.status, t.createdAt),
    index("invoices_created_idx").on(t.createdAt, t.id),
  ],
);

export const invoiceLines = sqliteTable(
  "invoice_lines",
  {
    id: text("id").primaryKey(),
    invoiceId: text("invoice_id").notNull().references(() => invoices.id),
    position: integer("position").notNull(),
    kind: text("kind", { enum: ["flat", "usage", "proration", "discount"] }).notNull(),
    description: text("description").notNull(),
    priceId: text("price_id"),
    meterId: text("meter_id"),
    /** Exact decimal strings. */
    quantity: text("quantity").notNull(),
    unitAmount: text("unit_amount"),
    /** Minor units, rounded once, half away from zero; negative for credits. */
    amount: integer("amount").notNull(),
    discountAmount: integer("discount_amount").notNull().default(0),
    taxAmount: integer("tax_amount").notNull().default(0),
    periodStart: integer("period_start").notNull(),
    periodEnd: integer("period_end").notNull(),
    /** How the amount was computed, in words. */
    computation: text("computation").notNull(),
  },
  (t) => [index("invoice_lines_invoice_idx").on(t.invoiceId, t.position)],
);

/** Gap-free invoice numbers: the counter moves in the same batch as the finalization. */
export const invoiceNumberSequences = sqliteTable("invoice_number_sequences", {
  year: integer("year").primaryKey(),
  lastNumber: integer("last_number").notNull(),
});

/** Charges and credits waiting for the subscription's next invoice (e.g. prorations). */
export const pendingItems = sqliteTable(
  "pending_items",
  {
    id: text("id").primaryKey(),
    subscriptionId: text("subscription_id").notNull(),
    customerId: text("customer_id").notNull(),
    currency: text("currency").notNull(),
    kind: text("kind", { enum: ["proration", "usage", "credit"] }).notNull(),
    description: text("description").notNull(),
    amount: integer("amount").notNull(),
    periodStart: integer("period_start").notNull(),
    periodEnd: integer("period_end").notNull(),
    computation: text("computation").notNull(),
    invoiceId: text("invoice_id"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("pending_items_subscription_idx").on(t.subscriptionId, t.invoiceId)],
);

/** Outbound notifications (reminders, dunning), sent by the webhooks queue; one per dedupe key. */
export const notifications = sqliteTable(
  "notifications",
  {
    id: text("id").primaryKey(),
    kind: text("kind").notNull(),
    customerId: text("customer_id").notNull(),
    invoiceId: text("invoice_id"),
    template: text("template").notNull(),
    payload: text("payload", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    dedupeKey: text("dedupe_key").notNull(),
    status: text("status", { enum: ["queued", "sent", "failed"] }).notNull(),
    createdAt: integer("created_at").notNull(),
    sentAt: integer("sent_at"),
    /** Delivery attempts made (POSTs to the notification webhook, answered or not). */
    attempts: integer("attempts").notNull().default(0),
    /** Why the last attempt did not deliver, or why the notification failed for good. */
    lastError: text("last_error"),
  },
  (t) => [uniqueIndex("notifications_dedupe_idx").on(t.dedupeKey), index("notifications_invoice_idx").on(t.invoiceId), index("notifications_status_idx").on(t.status, t.createdAt)],
);

/** A retention offer taken up: one per offer code, written in the same batch as the discount it applies. */
export const offerRedemptions = sqliteTable("offer_redemptions", {
  offerCode: text("offer_code").primaryKey(),
  notificationId: text("notification_id").notNull(),
  campaignId: text("campaign_id").notNull(),
  customerId: text("customer_id").notNull(),
  subscriptionId: text("subscription_id").notNull(),
  discountPercent: text("discount_percent").notNull(),
  redeemedAt: integer("redeemed_at").notNull(),
});

/** Operator settings (retry strategy, billing config) as JSON per key; cached per isolate. */
export const settings = sqliteTable("settings", {
  key: text("key").primaryKey(),
  value: text("value", { mode: "json" }).$type<unknown>().notNull(),
  updatedBy: text("updated_by").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

export const paymentStatuses = ["pending", "parked", "processing", "succeeded", "failed", "canceled"] as const;
export type PaymentStatus = (typeof paymentStatuses)[number];

/** One collection attempt of an invoice; its idempotency key (invoice + attempt) is what the gateway sees. */
export const payments = sqliteTable(
  "payments",
  {
    id: text("id").primaryKey(),
    invoiceId: text("invoice_id").notNull(),
    customerId: text("customer_id").notNull(),
    attempt: integer("attempt").notNull(),
    amount: integer("amount").notNull(),
    currency: text("currency").notNull(),
    status: text("status", { enum: paymentStatuses }).notNull(),
    gateway: text("gateway"),
    gatewayPaymentId: text("gateway_payment_id"),
    paymentMethod: text("payment_method"),
    idempotencyKey: text("idempotency_key").notNull(),
    failureCode: text("failure_code"),
    failureMessage: text("failure_message"),
    amountRefunded: integer("amount_refunded").notNull().default(0),
    nextRetryAt: integer("next_retry_at"),
    latencyMs: integer("latency_ms"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("payments_invoice_attempt_idx").on(t.invoiceId, t.attempt),
    uniqueIndex("payments_idempotency_idx").on(t.idempotencyKey),
    index("payments_status_idx").on(t.status, t.createdAt),
    index("payments_gateway_ref_idx").on(t.gatewayPaymentId),
    index("payments_created_idx").on(t.createdAt, t.id),
  ],
);

export const refundStatuses = ["pending", "succeeded", "failed"] as const;

export const refunds = sqliteTable(
  "refunds",
  {
    id: text("id").primaryKey(),
    paymentId: text("payment_id").notNull(),
    amount: integer("amount").notNull(),
    currency: text("currency").notNull(),
    reason: text("reason").notNull(),
    status: text("status", { enum: refundStatuses }).notNull(),
    gateway: text("gateway"),
    gatewayRefundId: text("gateway_refund_id"),
    idempotencyKey: text("idempotency_key").notNull(),
    failureMessage: text("failure_message"),
    notify: integer("notify", { mode: "boolean" }).notNull().default(false),
    bulkId: text("bulk_id"),
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("refunds_idempotency_idx").on(t.idempotencyKey),
    index("refunds_payment_idx").on(t.paymentId),
    index("refunds_created_idx").on(t.createdAt),
    index("refunds_gateway_ref_idx").on(t.gatewayRefundId),
  ],
);

/** Inbound Stripe events, stored once by id, applied through the webhooks queue. */
export const webhookEvents = sqliteTable(
  "webhook_events",
  {
    id: text("id").primaryKey(),
    source: text("source").notNull(),
    type: text("type").notNull(),
    payload: text("payload").notNull(),
    status: text("status", { enum: ["received", "processed", "failed", "ignored"] }).notNull(),
    error: text("error"),
    receivedAt: integer("received_at").notNull(),
    processedAt: integer("processed_at"),
  },
  (t) => [index("webhook_events_status_idx").on(t.status, t.receivedAt)],
);

/** What the embedded sandbox gateway "holds": its own ledger, so reconciliation has a counterpart to compare. */
export const sandboxLedger = sqliteTable(
  "sandbox_ledger",
  {
    id: text("id").primaryKey(),
    kind: text("kind", { enum: ["charge", "refund"] }).notNull(),
    idempotencyKey: text("idempotency_key").notNull(),
    chargeId: text("charge_id"),
    amount: integer("amount").notNull(),
    currency: text("currency").notNull(),
    status: text("status", { enum: ["succeeded", "failed"] }).notNull(),
    failureCode: text("failure_code"),
    paymentMethod: text("payment_method"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [uniqueIndex("sandbox_ledger_idempotency_idx").on(t.idempotencyKey), index("sandbox_ledger_created_idx").on(t.createdAt)],
);

export const discrepancies = sqliteTable(
  "discrepancies",
  {
    id: text("id").primaryKey(),
    date: text("date").notNull(),
    gateway: text("gateway").notNull(),
    kind: text("kind", { enum: ["missing_at_gateway", "missing_locally", "amount_mismatch", "status_mismatch"] }).notNull(),
    objectType: text("object_type", { enum: ["payment", "refund"] }).notNull(),
    localId: text("local_id"),
    gatewayId: text("gateway_id"),
    localAmount: integer("local_amount"),
    gatewayAmount: integer("gateway_amount"),
    currency: text("currency"),
    detail: text("detail").notNull(),
    status: text("status", { enum: ["open", "resolved"] }).notNull(),
    createdAt: integer("created_at").notNull(),
    resolvedAt: integer("resolved_at"),
    /** recon_unique: when a comparison last found it (set by every upsert); a run resolves only what none found since it started. */
    foundAt: integer("found_at"),
    /** recon_unique: the reconciliation run that resolved it (null: open, or resolved by a one-request comparison). */
    resolvedByRun: text("resolved_by_run"),
  },
  (t) => [uniqueIndex("discrepancies_unique_idx").on(t.date, t.gateway, t.kind, t.localId, t.gatewayId), index("discrepancies_status_idx").on(t.status, t.date)],
);

/** Prometheus counters and histogram buckets, incremented in the same batch as the event they count. */
export const metricCounters = sqliteTable(
  "metric_counters",
  {
    name: text("name").notNull(),
    /** Canonical label set, e.g. `currency="USD",gateway="sandbox"`. */
    labels: text("labels").notNull(),
    value: integer("value").notNull(),
  },
  (t) => [primaryKey({ columns: [t.name, t.labels] })],
);

/**
 * The event stream (outbox): one row per state change of an object, written in the same D1 batch as the change.
 * `data` is `{ object, previousAttributes }` where `object` is the JSON the REST API returns for that object.
 * Kept 30 days in D1, then archived to R2.
 */
export const events = sqliteTable(
  "events",
  {
    id: text("id").primaryKey(),
    type: text("type").notNull(),
    objectType: text("object_type").notNull(),
    objectId: text("object_id").notNull(),
    customerId: text("customer_id"),
    livemode: integer("livemode", { mode: "boolean" }).notNull(),
    requestId: text("request_id"),
    data: text("data", { mode: "json" }).$type<{ object: unknown; previousAttributes: Record<string, unknown> | null }>().notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [
    index("events_created_idx").on(t.createdAt, t.id),
    index("events_type_idx").on(t.type, t.createdAt),
    index("events_object_idx").on(t.objectId, t.createdAt),
  ],
);

/** Where applications receive the event stream. The signing secret is stored encrypted (AES-GCM, key outside D1). */
export const webhookEndpoints = sqliteTable(
  "webhook_endpoints",
  {
    id: text("id").primaryKey(),
    url: text("url").notNull(),
    description: text("description"),
    /** Event types, `prefix.*` patterns, or ["*"]. */
    enabledEvents: text("enabled_events", { mode: "json" }).$type<string[]>().notNull(),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, string>>().notNull().default(sql`'{}'`),
    disabled: integer("disabled", { mode: "boolean" }).notNull().default(false),
    disabledReason: text("disabled_reason"),
    secretCiphertext: text("secret_ciphertext").notNull(),
    /** After a rotation the previous secret still signs (as a second signature) until this time. */
    previousSecretCiphertext: text("previous_secret_ciphertext"),
    previousSecretExpiresAt: integer("previous_secret_expires_at"),
    /** Set when a delivery to it first fails after a success; cleared on the next success. */
    failingSince: integer("failing_since"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("webhook_endpoints_created_idx").on(t.createdAt, t.id)],
);

/** One per (event, endpoint): at-least-once delivery with retries; its attempts are below. */
export const webhookDeliveries = sqliteTable(
  "webhook_deliveries",
  {
    id: text("id").primaryKey(),
    eventId: text("event_id").notNull(),
    endpointId: text("endpoint_id").notNull(),
    status: text("status", { enum: ["pending", "succeeded", "failed"] }).notNull(),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: integer("next_attempt_at"),
    lastStatusCode: integer("last_status_code"),
    lastError: text("last_error"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("webhook_deliveries_pair_idx").on(t.eventId, t.endpointId),
    index("webhook_deliveries_endpoint_idx").on(t.endpointId, t.createdAt),
    index("webhook_deliveries_due_idx").on(t.status, t.nextAttemptAt),
  ],
);

export const webhookDeliveryAttempts = sqliteTable(
  "webhook_delivery_attempts",
  {
    id: text("id").primaryKey(),
    deliveryId: text("delivery_id").notNull(),
    at: integer("at").notNull(),
    statusCode: integer("status_code"),
    latencyMs: integer("latency_ms").notNull(),
    error: text("error"),
  },
  (t) => [index("webhook_delivery_attempts_delivery_idx").on(t.deliveryId, t.at)],
);

// --- credits ---

/** A reusable discount (Stripe's coupon): a percentage or a fixed amount in one currency, for a number of billing periods. */
export const coupons = sqliteTable(
  "coupons",
  {
    id: text("id").primaryKey(),
    name: text("name"),
    /** Decimal string, 0-100 with at most 4 decimals; null for an amount-off coupon. */
    percentOff: text("percent_off"),
    /** Minor units of `currency`; null for a percent-off coupon. */
    amountOff: integer("amount_off"),
    currency: text("currency"),
    duration: text("duration", { enum: ["once", "repeating", "forever"] }).notNull(),
    durationInMonths: integer("duration_in_months"),
    maxRedemptions: integer("max_redemptions"),
    /** Moved only by a guarded `times_redeemed < max_redemptions` update in the redeeming batch. */
    timesRedeemed: integer("times_redeemed").notNull().default(0),
    redeemBy: integer("redeem_by"),
    appliesToPlanIds: text("applies_to_plan_ids", { mode: "json" }).$type<string[]>(),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, string>>().notNull().default(sql`'{}'`),
    /** Deleted coupons can no longer be redeemed; discounts already applied keep running. */
    deletedAt: integer("deleted_at"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("coupons_created_idx").on(t.createdAt, t.id)],
);

/** A customer-facing code for a coupon, with its own limits. Codes are unique (case-insensitive: stored upper-case). */
export const promotionCodes = sqliteTable(
  "promotion_codes",
  {
    id: text("id").primaryKey(),
    couponId: text("coupon_id").notNull(),
    code: text("code").notNull(),
    customerId: text("customer_id"),
    expiresAt: integer("expires_at"),
    maxRedemptions: integer("max_redemptions"),
    timesRedeemed: integer("times_redeemed").notNull().default(0),
    /** Only for customers with no paid invoice yet. */
    firstTimeTransaction: integer("first_time_transaction", { mode: "boolean" }).notNull().default(false),
    active: integer("active", { mode: "boolean" }).notNull().default(true),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [uniqueIndex("promotion_codes_code_idx").on(t.code), index("promotion_codes_created_idx").on(t.createdAt, t.id)],
);

/**
 * A coupon applied to a subscription (Stripe's discount). It covers `periods` billing-period invoices (null:
 * forever), counted by `periodsUsed` in the batch of each invoice it discounts; `endsAt` (legacy day-based
 * discounts and retention offers) bounds it in time as well. At most one discount per subscription is current.
 */
export const discounts = sqliteTable(
  "discounts",
  {
    id: text("id").primaryKey(),
    subscriptionId: text("subscription_id").notNull(),
    customerId: text("customer_id").notNull(),
    couponId: text("coupon_id").notNull(),
    promotionCodeId: text("promotion_code_id"),
    periods: integer("periods"),
    periodsUsed: integer("periods_used").notNull().default(0),
    endsAt: integer("ends_at"),
    /** Removed, replaced or used up; null while current. */
    endedAt: integer("ended_at"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("discounts_subscription_idx").on(t.subscriptionId, t.endedAt), index("discounts_customer_idx").on(t.customerId)],
);

/** What each discount took off an invoice (Stripe's total_discount_amounts), written with the invoice. */
export const invoiceDiscounts = sqliteTable(
  "invoice_discounts",
  {
    invoiceId: text("invoice_id").notNull(),
    discountId: text("discount_id").notNull(),
    couponId: text("coupon_id").notNull(),
    promotionCodeId: text("promotion_code_id"),
    amount: integer("amount").notNull(),
  },
  (t) => [primaryKey({ columns: [t.invoiceId, t.discountId] })],
);

export const creditGrantStatuses = ["pending", "active", "expired", "voided"] as const;

/**
 * Prepaid or promotional credit of a customer (a wallet entry). `remaining` moves only through `credit_ledger`
 * rows written in the same batch. `pending`: a paid grant whose purchase invoice is not paid yet.
 */
export const creditGrants = sqliteTable(
  "credit_grants",
  {
    id: text("id").primaryKey(),
    customerId: text("customer_id").notNull(),
    currency: text("currency").notNull(),
    category: text("category", { enum: ["paid", "promotional"] }).notNull(),
    /** Where it came from: `api`, `invoice_balance` (a negative invoice or today's customer credit), `credit_note`. */
    source: text("source").notNull(),
    name: text("name"),
    amount: integer("amount").notNull(),
    remaining: integer("remaining").notNull(),
    /** 0 (used first) to 100 (used last). */
    priority: integer("priority").notNull(),
    expiresAt: integer("expires_at"),
    appliesToMeterIds: text("applies_to_meter_ids", { mode: "json" }).$type<string[]>(),
    status: text("status", { enum: creditGrantStatuses }).notNull(),
    purchaseInvoiceId: text("purchase_invoice_id"),
    sourceId: text("source_id"),
    testClockId: text("test_clock_id"),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, string>>().notNull().default(sql`'{}'`),
    voidedAt: integer("voided_at"),
    expiredAt: integer("expired_at"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    index("credit_grants_customer_idx").on(t.customerId, t.status),
    index("credit_grants_expiry_idx").on(t.status, t.expiresAt),
    index("credit_grants_purchase_idx").on(t.purchaseInvoiceId),
  ],
);

/** Every movement of credit, signed (+ adds to the balance): granted, applied to an invoice, returned by a void, expired, voided. */
export const creditLedger = sqliteTable(
  "credit_ledger",
  {
    id: text("id").primaryKey(),
    customerId: text("customer_id").notNull(),
    grantId: text("grant_id").notNull(),
    type: text("type", { enum: ["granted", "applied", "returned", "expired", "voided"] }).notNull(),
    amount: integer("amount").notNull(),
    currency: text("currency").notNull(),
    invoiceId: text("invoice_id"),
    at: integer("at").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("credit_ledger_customer_idx").on(t.customerId, t.at, t.id), index("credit_ledger_invoice_idx").on(t.invoiceId)],
);

// --- documents ---

/**
 * A hosted invoice link: the URL's token is HMAC(JWT_SECRET, "invoice-link:" + id), so only its SHA-256 is stored
 * here; rotating makes a new row and revokes the old one. Expired or revoked rows answer 404 like unknown tokens.
 */
export const invoiceLinks = sqliteTable(
  "invoice_links",
  {
    id: text("id").primaryKey(),
    invoiceId: text("invoice_id").notNull(),
    tokenHash: text("token_hash").notNull(),
    expiresAt: integer("expires_at").notNull(),
    revokedAt: integer("revoked_at"),
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [uniqueIndex("invoice_links_token_idx").on(t.tokenHash), index("invoice_links_invoice_idx").on(t.invoiceId, t.createdAt)],
);

export const creditNoteStatuses = ["issued", "void"] as const;
export type CreditNoteStatus = (typeof creditNoteStatuses)[number];

/**
 * A correction of a finalized invoice (Stripe's semantics). `total` = Σ lines (amount + tax) and is split into
 * what reduced the invoice's amount due (open invoice), what was refunded and what went to the customer's credit.
 */
export const creditNotes = sqliteTable(
  "credit_notes",
  {
    id: text("id").primaryKey(),
    /** Gap-free per year: CN-2026-000001. */
    number: text("number").notNull(),
    invoiceId: text("invoice_id").notNull(),
    customerId: text("customer_id").notNull(),
    status: text("status", { enum: creditNoteStatuses }).notNull(),
    currency: text("currency").notNull(),
    reason: text("reason", { enum: ["duplicate", "fraudulent", "order_change", "product_unsatisfactory"] }).notNull(),
    memo: text("memo"),
    subtotal: integer("subtotal").notNull(),
    tax: integer("tax").notNull(),
    total: integer("total").notNull(),
    /** Taken off the open invoice's amount due. */
    invoiceCreditAmount: integer("invoice_credit_amount").notNull(),
    refundAmount: integer("refund_amount").notNull(),
    refundId: text("refund_id"),
    creditBalanceAmount: integer("credit_balance_amount").notNull(),
    taxJurisdiction: text("tax_jurisdiction"),
    taxRate: text("tax_rate"),
    voidedAt: integer("voided_at"),
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("credit_notes_number_idx").on(t.number),
    index("credit_notes_invoice_idx").on(t.invoiceId, t.createdAt),
    index("credit_notes_customer_idx").on(t.customerId, t.createdAt),
    index("credit_notes_created_idx").on(t.createdAt, t.id),
  ],
);

export const creditNoteLines = sqliteTable(
  "credit_note_lines",
  {
    id: text("id").primaryKey(),
    creditNoteId: text("credit_note_id").notNull(),
    invoiceLineId: text("invoice_line_id").notNull(),
    position: integer("position").notNull(),
    description: text("description").notNull(),
    /** Exact decimal string; null when credited by amount. */
    quantity: text("quantity"),
    /** Pre-tax amount credited (minor units, positive) and its proportional tax. */
    amount: integer("amount").notNull(),
    taxAmount: integer("tax_amount").notNull(),
  },
  (t) => [index("credit_note_lines_note_idx").on(t.creditNoteId, t.position), index("credit_note_lines_invoice_line_idx").on(t.invoiceLineId)],
);

/** Gap-free credit note numbers, like invoice numbers: the counter moves in the note's own batch. */
export const creditNoteNumberSequences = sqliteTable("credit_note_number_sequences", {
  year: integer("year").primaryKey(),
  lastNumber: integer("last_number").notNull(),
});

// --- retention ---

/** Kinds of rows the retention policy moves from D1 to R2 (docs/retention.md). */
export const retentionKinds = ["events", "invoice_lines", "payment_attempts", "audit"] as const;
export type RetentionKind = (typeof retentionKinds)[number];

/**
 * One verified archive in R2 per row: written in the same batch that deletes its rows from D1, so a row here means
 * the rows are gone from D1 and their archive was read back and matched its manifest. The key is derived from the
 * rows (kind, first and last row), so a page archived twice is the same object and this insert does nothing.
 */
export const retentionArchives = sqliteTable(
  "retention_archives",
  {
    key: text("key").primaryKey(),
    kind: text("kind", { enum: retentionKinds }).notNull(),
    manifestKey: text("manifest_key").notNull(),
    runId: text("run_id").notNull(),
    rows: integer("rows").notNull(),
    bytes: integer("bytes").notNull(),
    sha256: text("sha256").notNull(),
    /** Time range of the rows (their creation time, or `at` for audit rows). */
    fromAt: integer("from_at").notNull(),
    toAt: integer("to_at").notNull(),
    firstRef: text("first_ref").notNull(),
    lastRef: text("last_ref").notNull(),
    /** Audit archives: the chain value of the last row (the checkpoint the live chain continues from). */
    endSeq: integer("end_seq"),
    endChain: text("end_chain"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("retention_archives_kind_idx").on(t.kind, t.createdAt, t.key), index("retention_archives_run_idx").on(t.runId)],
);

/** One run of the policy (daily cron or POST /admin/retention/run); its messages continue it kind by kind. */
export const retentionRuns = sqliteTable(
  "retention_runs",
  {
    id: text("id").primaryKey(),
    trigger: text("trigger", { enum: ["cron", "api"] }).notNull(),
    /** The run's clock: every message of the run uses the same cutoffs. */
    now: integer("now").notNull(),
    startedAt: integer("started_at").notNull(),
    finishedAt: integer("finished_at"),
    /** The kind being worked on, null once finished. */
    currentKind: text("current_kind"),
    error: text("error"),
  },
  (t) => [index("retention_runs_started_idx").on(t.startedAt)],
);
// --- docfix ---
/** What `subscriptions.discount` holds (the API's Discount object, coupons/schemas.ts). */
export type SubscriptionDiscountMirror = {
  id: string;
  object: "discount";
  subscriptionId: string;
  customerId: string;
  couponId: string;
  promotionCodeId: string | null;
  periods: number | null;
  periodsUsed: number;
  periodsRemaining: number | null;
  endsAt: string | null;
  endedAt: string | null;
  createdAt: string;
};
// --- recon ---
/**
 * A paged reconciliation of one UTC day and gateway (src/modules/reconciliation/run.ts): one row per run, moved a
 * step per tasks-queue message. Totals and counts are JSON kept up to date as the run goes; `step` numbers the
 * messages (only the delivery holding the current step may advance it) and `sentStep` is the last one sent.
 */
export const reconciliationRuns = sqliteTable(
  "reconciliation_runs",
  {
    id: text("id").primaryKey(),
    date: text("date").notNull(),
    gateway: text("gateway").notNull(),
    status: text("status", { enum: ["running", "complete", "failed"] }).notNull(),
    /** gateway: paging balance transactions; local: the day's rows the gateway listing did not cover; finish: resolve, totals, audit. */
    phase: text("phase", { enum: ["gateway", "local", "finish"] }).notNull(),
    step: integer("step").notNull(),
    sentStep: integer("sent_step").notNull(),
    /** The gateway's listing cursor (a balance transaction id) and the local keysets ("createdAt:id"). */
    gatewayCursor: text("gateway_cursor"),
    paymentCursor: text("payment_cursor"),
    refundCursor: text("refund_cursor"),
    /** Per currency: the gateway side summed page by page, the local side once at the end (CurrencyTotals of compare.ts). */
    totals: text("totals", { mode: "json" }).$type<Record<string, { local: { charges: number; refunds: number; net: number; count: number }; gateway: { charges: number; refunds: number; net: number; count: number } }>>().notNull(),
    /** transactions, localChecked, retrieved, matched, crossDayMatched, resolved, and a count per discrepancy kind. */
    counts: text("counts", { mode: "json" }).$type<Record<string, number>>().notNull(),
    creditNotes: text("credit_notes", { mode: "json" }).$type<Record<string, { issued: number; refunded: number; nonCash: number; unmatchedRefundIds: string[] }>>(),
    error: text("error"),
    actor: text("actor", { mode: "json" }).$type<Actor>().notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    finishedAt: integer("finished_at"),
  },
  (t) => [
    index("reconciliation_runs_day_idx").on(t.date, t.gateway, t.status),
    index("reconciliation_runs_created_idx").on(t.createdAt),
    // recon_unique: at most one running run of a day and gateway (starting one inserts ON CONFLICT DO NOTHING).
    uniqueIndex("reconciliation_runs_running_idx").on(t.date, t.gateway).where(sql`status = 'running'`),
  ],
);

/** Local payments and refunds a run has already compared (and, `matched`, found equal), and the discrepancies it found. */
export const reconciliationSeen = sqliteTable(
  "reconciliation_seen",
  {
    runId: text("run_id").notNull(),
    itemId: text("item_id").notNull(),
    matched: integer("matched", { mode: "boolean" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.runId, t.itemId] })],
);

// --- task_claims ---
/**
 * The continuation steps of cron tasks already sent (src/scheduled.ts): a queue may deliver a message twice, and both
 * deliveries would send the next page, forking the chain. The first to claim step k + 1 sends it; rows older than a
 * few days are swept daily.
 */
export const taskContinuations = sqliteTable(
  "task_continuations",
  {
    key: text("key").primaryKey(),
    /** When the claim was taken (or taken over from a sender that did not finish). */
    createdAt: integer("created_at").notNull(),
    // --- task_claims_sent ---
    /** When its message was sent; null while the claimant is sending it (or died doing so: a lease, see continuations.ts). */
    sentAt: integer("sent_at"),
  },
  (t) => [index("task_continuations_created_idx").on(t.createdAt)],
);
