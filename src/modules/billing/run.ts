/**
 * Moved: the billing run is the subscription lifecycle's time-driven half (src/modules/subscriptions/billing-run.ts),
 * so imports go subscriptions → billing only. This re-export remains until the last importers (invoices/routes.ts,
 * scheduled.ts, queues/*, tests) import from the new places; then delete it.
 */
export { SYSTEM_ACTOR } from "./actor";
export { enqueueDue, generatePending, type RunReport } from "../subscriptions/billing-run";
