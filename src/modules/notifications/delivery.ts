import { formatMinor } from "../../domain/money";
import { iso } from "../../lib/time";
import type { customers, invoices, notifications } from "../../db/schema";
import { secretKeyBytes, signatureHeader } from "../../lib/standard-webhooks";

type NotificationRow = typeof notifications.$inferSelect;
type CustomerRow = Pick<typeof customers.$inferSelect, "id" | "email" | "name">;
type InvoiceRow = Pick<typeof invoices.$inferSelect, "id" | "number" | "status" | "currency" | "total" | "amountDue" | "dueAt">;

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

/** Delivery is configured when both the URL and the signing secret are set; unsigned messages are never sent. */
export function deliveryProblem(env: Env): string | null {
  if (!env.NOTIFY_WEBHOOK_URL) return "notification delivery is not configured: set NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET";
  if (!env.NOTIFY_WEBHOOK_SECRET) return "NOTIFY_WEBHOOK_SECRET is empty: notifications are never sent unsigned";
  if (!keyBytes(env.NOTIFY_WEBHOOK_SECRET)) return "NOTIFY_WEBHOOK_SECRET must be whsec_ followed by base64 (as Standard Webhooks libraries expect)";
  return null;
}
