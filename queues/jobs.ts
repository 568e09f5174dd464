import { messageServices, type Services } from "../src/platform/services";
import { purgeExpiredIdempotencyKeys } from "../src/http/idempotency";
import { resyncMeters } from "../src/modules/usage/meter-config";
import { runWeeklyVerification } from "../src/modules/audit/verify";
import { archiveOldEvents } from "../src/modules/events/retention";
import { consumer } from "./dispatch";
import { runDueSteps } from "../src/modules/subscriptions/renewal";
import type { JobMessage } from "./messages";
import { queueNames } from "./messages";
import { prepareInvoiceDocument } from "../src/modules/documents/prepare";
import { creditNotePdf } from "../src/modules/documents/store";

/**
 * Renewal steps one jobs invocation may take, shared by its messages: a step is about 30 D1 queries, so 24 steps stay
 * inside Cloudflare's 1,000 queries per invocation whatever the batch size (wrangler.toml's max_batch_size, 20).
 */
export const STEPS_PER_BATCH = 24;
/** A message's share of the batch's steps (at least one): a subscription far behind continues in a fresh message. */
export const stepsPerMessage = (batchSize: number) => Math.max(1, Math.floor(STEPS_PER_BATCH / Math.max(1, batchSize)));

export const jobHandlers = {
  // Renewals, trial ends, resumes, scheduled changes of one subscription; idempotent, so redelivery is harmless.
  // At most its share of STEPS_PER_BATCH, so the batch stays inside the per-invocation limits even when every
  // subscription in it is far behind; the rest continues in a fresh message.
  "billing.run_due": async (m: Extract<JobMessage, { type: "billing.run_due" }>, s: Services, _attempts: number, batchSize: number) => {
    const { more } = await runDueSteps(s, m.subscriptionId, s.clock.wall, stepsPerMessage(batchSize));
    if (more) await s.queues.jobs.send({ type: "billing.run_due", subscriptionId: m.subscriptionId });
    return { status: "done" as const };
  },
  "meters.resync": async (_m: Extract<JobMessage, { type: "meters.resync" }>, s: Services) => {
    const r = await resyncMeters(s);
    return r.failed ? { status: "retry" as const, delaySeconds: 60, reason: `${r.failed} meters did not acknowledge` } : { status: "done" as const };
  },
  "idempotency.purge": async (_m: Extract<JobMessage, { type: "idempotency.purge" }>, s: Services) => {
    await purgeExpiredIdempotencyKeys(s.env, s.clock.wall);
    return { status: "done" as const };
  },
  "audit.verify": async (m: Extract<JobMessage, { type: "audit.verify" }>, s: Services) => {
    // Seals and verifies a stretch; the rest continues on the tasks queue, and the last stretch copies the anchor's
    // head to R2 and stores the report.
    await runWeeklyVerification(s, m.reportKey, s.clock.wall);
    return { status: "done" as const };
  },
  // Queues itself again while events past retention remain.
  "events.archive": async (_m: Extract<JobMessage, { type: "events.archive" }>, s: Services) => {
    await archiveOldEvents(s, s.clock.wall);
    return { status: "done" as const };
  },
  // Outside the money batch: the PDF of the invoice's current state and its hosted link (both idempotent).
  "invoice.document": async (m: Extract<JobMessage, { type: "invoice.document" }>, s: Services) => {
    await prepareInvoiceDocument(s, m.invoiceId);
    return { status: "done" as const };
  },
  "credit_note.document": async (m: Extract<JobMessage, { type: "credit_note.document" }>, s: Services) => {
    await creditNotePdf(s, m.creditNoteId, { body: false });
    return { status: "done" as const };
  },
};

/** One subscription's (or invoice's) messages in a batch run in order; different ones concurrently. */
const jobKey = (m: JobMessage): string =>
  m.type === "billing.run_due" ? `subscription:${m.subscriptionId}` : m.type === "invoice.document" ? `invoice:${m.invoiceId}` : m.type === "credit_note.document" ? `credit_note:${m.creditNoteId}` : m.type;

export const consumeJobs = consumer<JobMessage>(queueNames.jobs, jobHandlers, { services: messageServices, keyOf: jobKey });
