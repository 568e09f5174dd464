/**
 * Moved: renewals are the subscription lifecycle's time-driven half (src/modules/subscriptions/renewal.ts), so
 * imports go subscriptions → billing only. This re-export remains until the last importers
 * (invoices/retry-failed.ts, queues/jobs.ts) import from there; then delete it.
 */
export { graceMsOf, nextRunAt, runDue, type StepResult } from "../subscriptions/renewal";
