// The parts of /openapi.json that no route declares: servers, tags (each operation's tag must be one of these) and
// the security default. info.description is the reference page's prose (owned with /docs).

export const tags = [
  { name: "Health", description: "Liveness and readiness probes. Public: a token, when sent, adds details." },
  { name: "Customers", description: "Who is billed: email, currency, country and region (for tax), tax exemption, metadata." },
  { name: "Plans", description: "The catalogue: plans with flat and metered prices, versioned so existing subscriptions keep their terms." },
  { name: "Subscriptions", description: "A customer on a plan: trials, pauses, plan changes with proration, cancellation, discounts." },
  { name: "Subscription monitoring", description: "Read-only views over subscriptions: active counts, renewals due, trial conversion, health." },
  { name: "Usage", description: "Metered usage: event ingestion (the hot path, API keys with usage:write), summaries, events and alerts." },
  { name: "Invoices", description: "Invoices generated at renewal from flat prices, metered usage and proration; voiding, reminders, archive." },
  { name: "Payments", description: "Charges against invoices, their retries and the retry policy." },
  { name: "Refunds", description: "Full and partial refunds, one at a time or in bulk, and the refund report." },
  { name: "Tax", description: "Tax rates per country and region, exemption certificates and the tax report." },
  { name: "Gateways", description: "Payment gateways (Stripe and the sandbox): status, connectivity tests, failover and restore." },
  { name: "Emergency", description: "Incident controls: freeze payments, queue mode, resume, and the encrypted emergency export." },
  { name: "Events", description: "The Stripe-style event stream (evt_…) written with every state change." },
  { name: "Coupons", description: "Coupons (percent or amount off, for once, repeating periods or forever), promotion codes and the discount on a subscription." },
  { name: "Credits", description: "Prepaid and promotional credit grants, consumed by invoices before charging, and the credit balance with its ledger." },
  { name: "Credit notes", description: "Corrections of finalized invoices: off an open invoice's amount due, or a paid one's refund and customer credit; numbered CN-YYYY-NNNNNN." },
  { name: "Hosted invoices", description: "Invoice PDFs and the hosted invoice page (an expiring, revocable link that needs no login)." },
  { name: "Drop-in ingestion", description: "Stripe meter events (v1 and the v2 stream) and OpenMeter CloudEvents, so existing senders switch by changing a base URL." },
  { name: "Webhook endpoints", description: "Outbound webhooks: endpoints subscribed to events, signed (Standard Webhooks), retried, with delivery logs." },
  { name: "Webhooks", description: "Inbound Stripe webhooks (signature-verified) and their administration: stored events, replay, cleanup." },
  { name: "Reconciliation", description: "Our payments against the gateway's balance transactions: discrepancies and reports." },
  { name: "Analytics", description: "Revenue, MRR, churn and at-risk customers, the weekly revenue report, and retention campaigns." },
  { name: "Audit", description: "The tamper-evident audit log: search, integrity verification and exports." },
  { name: "Compliance", description: "SOX report, encryption status and card-data access audit." },
  { name: "Test clocks", description: "Simulated time for a customer's subscriptions: advance a clock to run renewals and invoices." },
  { name: "Admin", description: "Operator settings: configuration, API keys, notifications, exchange rates, backups and the dead-letter queue." },
  { name: "Feature flags", description: "Flags with percentage rollouts, stable per subject." },
  { name: "Monitoring", description: "Prometheus metrics." },
];

export const servers = [{ url: "/", description: "This deployment: the origin that serves this document" }];
