import { formatMinor } from "../../domain/money";
import { iso } from "../../lib/time";
import type { customers, invoices, notifications } from "../../db/schema";
import { secretKeyBytes, signatureHeader, standardWebhookHeaders } from "../../lib/standard-webhooks";

type NotificationRow = typeof notifications.$inferSelect;
type CustomerRow = Pick<typeof customers.$inferSelect, "id" | "email" | "name">;
type InvoiceRow = Pick<typeof invoices.$inferSelect, "id" | "number" | "status" | "currency" | "total" | "amountDue" | "dueAt">;

/**
 * After this many attempts a notification is given up (status `failed`). Below the webhooks queue's 9 deliveries
 * (max_retries 8 in wrangler.toml), so a message chain always ends with the row decided, never in the DLQ.
 */
export const MAX_DELIVERY_ATTEMPTS = 8;
const TIMEOUT_MS = 10_000;

/**
 * What the notification webhook receives: everything a mailer needs to render the message (recipient, template,
 * invoice figures as decimal strings and minor units) without calling back.
 */
export function notificationEnvelope(row: NotificationRow, customer: CustomerRow | undefined, invoice: InvoiceRow | undefined, links: { hostedUrl: string; pdfUrl: string } | null = null) {
  return {
    id: row.id,
    type: row.kind,
    template: row.template,
    createdAt: iso(row.createdAt),
    customer: customer ? { id: customer.id, email: customer.email, name: customer.name } : { id: row.customerId, email: null, name: null },
    invoice: invoice
      ? {
          id: invoice.id,
          number: invoice.number,
          status: invoice.status,
          currency: invoice.currency,
          total: formatMinor(invoice.total, invoice.currency),
          totalMinor: invoice.total,
          amountDue: formatMinor(invoice.amountDue, invoice.currency),
          amountDueMinor: invoice.amountDue,
          dueAt: iso(invoice.dueAt),
          /** The hosted invoice page and its PDF (no login; absolute when the documents setting has publicBaseUrl). */
          hostedUrl: links?.hostedUrl ?? null,
          pdfUrl: links?.pdfUrl ?? null,
        }
      : null,
    data: row.payload,
  };
}

// The signer is shared with webhook endpoints (src/lib/standard-webhooks.ts); re-exported for existing callers.
export { signatureHeader };
const keyBytes = secretKeyBytes;

export type DeliveryOutcome =
  | { kind: "delivered"; status: number }
  /** Worth another attempt: a timeout, a network error, 408, 429 or a 5xx. */
  | { kind: "retry"; error: string }
  /** Another attempt cannot help: delivery is not configured, or the receiver refused the message (other 4xx). */
  | { kind: "refused"; error: string };

/** Delivery is configured when both the URL and the signing secret are set; unsigned messages are never sent. */
export function deliveryProblem(env: Env): string | null {
  if (!env.NOTIFY_WEBHOOK_URL) return "notification delivery is not configured: set NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET";
  if (!env.NOTIFY_WEBHOOK_SECRET) return "NOTIFY_WEBHOOK_SECRET is empty: notifications are never sent unsigned";
  if (!keyBytes(env.NOTIFY_WEBHOOK_SECRET)) return "NOTIFY_WEBHOOK_SECRET must be whsec_ followed by base64 (as Standard Webhooks libraries expect)";
  return null;
}

/** POSTs one envelope to the notification webhook; `webhook-id` is the notification id, so receivers can dedupe. */
export async function postNotification(env: Env, envelope: ReturnType<typeof notificationEnvelope>, now: number): Promise<DeliveryOutcome> {
  const problem = deliveryProblem(env);
  if (problem) return { kind: "refused", error: problem };
  const body = JSON.stringify(envelope);
  const timestamp = Math.floor(now / 1000);
  let response: Response;
  try {
    response = await fetch(env.NOTIFY_WEBHOOK_URL, {
      method: "POST",
      headers: await standardWebhookHeaders([env.NOTIFY_WEBHOOK_SECRET], envelope.id, timestamp, body, "billing-engine-notifications/1"),
      body,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (e) {
    return { kind: "retry", error: `delivery failed: ${e instanceof Error ? e.message : String(e)}` };
  }
  const answer = (await response.text().catch(() => "")).slice(0, 200);
  if (response.ok) return { kind: "delivered", status: response.status };
  const error = `webhook answered ${response.status}${answer ? `: ${answer}` : ""}`;
  return response.status >= 500 || response.status === 408 || response.status === 429 ? { kind: "retry", error } : { kind: "refused", error };
}
