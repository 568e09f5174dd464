import { useState } from "preact/hooks";
import { api, ApiProblem, call, opt, type Query, type Schema } from "../api";
import { can, type Session } from "../auth";
import { fmtDate, fmtDay, fmtMoney } from "../format";
import { ActionButton, Badge, Card, ConfirmDialog, DL, Loading, Money, PagedTable, ProblemBox, Table, useAsync, type Column } from "../ui";
import { paymentColumns } from "./payments";
import { CreditNotesOf, invoicePdf, IssueCreditNote, loadCreditable, type CreditNote } from "./credit-notes";

export type Invoice = Schema["Invoice"];
type InvoiceStatus = NonNullable<Query<"/api/v1/invoices">["status"]>;

export const invoiceColumns: Column<Invoice>[] = [
  { label: "Invoice", cell: (i) => <a href={`/console/invoices/${i.id}`}>{i.number ?? <code>{i.id}</code>}</a> },
  { label: "Customer", cell: (i) => <a href={`/console/customers/${i.customerId}`}>{i.customerId}</a> },
  { label: "Status", cell: (i) => <Badge status={i.status} /> },
  { label: "Reason", cell: (i) => i.billingReason },
  { label: "Total", class: "num", cell: (i) => <Money minor={i.total.amountMinor} currency={i.currency} /> },
  { label: "Due", class: "num", cell: (i) => <Money minor={i.amountDue.amountMinor} currency={i.currency} /> },
  { label: "Created", cell: (i) => fmtDay(i.createdAt) },
];

const STATUSES: (InvoiceStatus | "")[] = ["", "draft", "open", "paid", "void", "uncollectible"];

export function Invoices() {
  const [f, setF] = useState<{ status: InvoiceStatus | ""; customerId: string; createdFrom: string; createdTo: string }>({ status: "", customerId: "", createdFrom: "", createdTo: "" });
  const set = (k: keyof typeof f) => (e: Event) => setF({ ...f, [k]: (e.target as HTMLInputElement).value.trim() });
  const query = {
    status: opt(f.status),
    customerId: f.customerId || undefined,
    createdFrom: f.createdFrom ? `${f.createdFrom}T00:00:00Z` : undefined,
    createdTo: f.createdTo ? `${f.createdTo}T23:59:59Z` : undefined,
  };
  return (
    <div class="page">
      <div class="page-head">
        <h1>Invoices</h1>
      </div>
      <Card>
        <div class="filters">
          <label class="field">
            <span>Status</span>
            <select value={f.status} onChange={set("status")}>
              {STATUSES.map((s) => (
                <option key={s} value={s}>
                  {s || "Any status"}
                </option>
              ))}
            </select>
          </label>
          <label class="field grow">
            <span>Customer id</span>
            <input value={f.customerId} onChange={set("customerId")} placeholder="cus_…" />
          </label>
          <label class="field">
            <span>Created from</span>
            <input type="date" value={f.createdFrom} onChange={set("createdFrom")} />
          </label>
          <label class="field">
            <span>Created to</span>
            <input type="date" value={f.createdTo} onChange={set("createdTo")} />
          </label>
        </div>
        <PagedTable<Invoice> label="Invoices" load={(page) => call(api.GET("/api/v1/invoices", { params: { query: { ...query, ...page } } }))} filters={[query]} columns={invoiceColumns} />
      </Card>
    </div>
  );
}

export function InvoiceDetail({ id, session }: { id: string; session: Session }) {
  const inv = useAsync(() => call(api.GET("/api/v1/invoices/{id}", { params: { path: { id } } })), [id]);
  const payments = useAsync(() => call(api.GET("/api/v1/payments", { params: { query: { invoiceId: id, limit: 20 } } })), [id, inv.data?.status]);
  const [voiding, setVoiding] = useState(false);
  const [crediting, setCrediting] = useState(false);
  const [issued, setIssued] = useState<CreditNote | null>(null);
  const [credits, setCredits] = useState(0);
  const [pdfError, setPdfError] = useState<ApiProblem | null>(null);
  const i = inv.data;
  const creditableStatus = i && (i.status === "open" || i.status === "paid" || i.status === "uncollectible") && !i.archived;
  const creditable = useAsync(() => (i && creditableStatus ? loadCreditable(i) : Promise.resolve(undefined)), [i, credits]);
  const money = can.moveMoney(session.role);
  const failed = payments.data?.data.find((p) => p.status === "failed");
  return (
    <div class="page">
      <div class="page-head">
        <h1>
          Invoice {i?.number ?? <code>{id}</code>} {i ? <Badge status={i.status} /> : null}
        </h1>
        <a href="/console/invoices">← Invoices</a>
      </div>
      <ProblemBox error={inv.error} />
      {inv.loading && !i ? <Loading /> : null}
      {i ? (
        <>
          <Card
            title="Invoice"
            actions={
              <div class="button-row">
                {i.pdfUrl ? (
                  <button type="button" onClick={() => invoicePdf(i).catch((e) => setPdfError(e as ApiProblem))}>
                    PDF
                  </button>
                ) : null}
                {i.hostedUrl ? (
                  <a class="button" href={i.hostedUrl} target="_blank" rel="noopener">
                    Hosted page
                  </a>
                ) : null}
                {money && failed && i.status === "open" ? <ActionButton label="Retry payment" class="primary" run={async () => (await call(api.POST("/api/v1/payments/{id}/retry", { params: { path: { id: failed.id } }, body: {} })), inv.reload(), payments.reload())} /> : null}
                {money && (i.status === "open" || i.status === "draft" || i.status === "uncollectible") ? (
                  <button type="button" class="danger" onClick={() => setVoiding(true)}>
                    Void
                  </button>
                ) : null}
              </div>
            }
          >
            <ProblemBox error={pdfError} />
            <DL
              items={[
                ["Customer", <a href={`/console/customers/${i.customerId}`}>{i.customerId}</a>],
                ["Subscription", i.subscriptionId ? <a href={`/console/subscriptions/${i.subscriptionId}`}>{i.subscriptionId}</a> : "—"],
                ["Billing reason", i.billingReason],
                ["Period", `${fmtDate(i.period.start)} → ${fmtDate(i.period.end)}`],
                ["Finalized", fmtDate(i.finalizedAt)],
                ["Due", fmtDate(i.dueAt)],
                ["Paid", fmtDate(i.paidAt)],
                ["Voided", i.voidedAt ? `${fmtDate(i.voidedAt)} — ${i.voidReason ?? ""}` : "—"],
                ["Attempts", `${i.attemptCount}${i.lastError ? ` — last error: ${i.lastError}` : ""}`],
              ]}
            />
          </Card>
          <Card title="Lines">
            <Table
              label="Invoice lines"
              rows={i.lines ?? []}
              columns={[
                { label: "Line", cell: (l) => (<><Badge status={l.kind} /> {l.description}<div class="muted small">{fmtDay(l.period.start)} → {fmtDay(l.period.end)}</div></>) },
                { label: "Quantity", class: "num", cell: (l) => l.quantity },
                { label: "Unit", class: "num", cell: (l) => l.unitAmount ?? "—" },
                { label: "Amount", class: "num", cell: (l) => <Money minor={l.amount.amountMinor} currency={i.currency} /> },
                { label: "Discount", class: "num", cell: (l) => (l.discount.amountMinor ? <Money minor={-l.discount.amountMinor} currency={i.currency} /> : "—") },
                { label: "Tax", class: "num", cell: (l) => <Money minor={l.tax.amountMinor} currency={i.currency} /> },
                { label: "How it was computed", cell: (l) => <span class="small">{l.computation}</span> },
              ]}
            />
            <table class="totals" aria-label="Totals">
              <tbody>
                <tr><th scope="row">Subtotal</th><td><Money minor={i.subtotal.amountMinor} currency={i.currency} /></td></tr>
                <tr><th scope="row">Discount</th><td><Money minor={-i.discount.amountMinor} currency={i.currency} /></td></tr>
                <tr><th scope="row">Tax {i.taxRate ? `(${(Number(i.taxRate) * 100).toFixed(2)} % ${i.taxJurisdiction ?? ""})` : ""}</th><td><Money minor={i.tax.amountMinor} currency={i.currency} /></td></tr>
                <tr class="strong"><th scope="row">Total</th><td><Money minor={i.total.amountMinor} currency={i.currency} /></td></tr>
                <tr><th scope="row">Credit applied</th><td><Money minor={-i.creditApplied.amountMinor} currency={i.currency} /></td></tr>
                <tr><th scope="row">Paid</th><td><Money minor={i.amountPaid.amountMinor} currency={i.currency} /></td></tr>
                <tr class="strong"><th scope="row">Amount due</th><td><Money minor={i.amountDue.amountMinor} currency={i.currency} /></td></tr>
              </tbody>
            </table>
          </Card>
          <Card
            title="Credit notes"
            actions={
              creditableStatus ? (
                <button type="button" class="primary" aria-expanded={crediting} disabled={!money} title={money ? undefined : "Finance and admin only"} onClick={() => (setCrediting(!crediting), setIssued(null))}>
                  Issue credit note
                </button>
              ) : null
            }
          >
            {issued ? (
              <p class="ok" role="status" data-testid="credit-note-issued">
                Credit note <a href={`/console/credit-notes/${issued.id}`}>{issued.number}</a> issued for {fmtMoney(issued.total.amountMinor, issued.currency)}.
              </p>
            ) : null}
            {crediting && money && creditableStatus ? (
              <>
                <ProblemBox error={creditable.error} />
                {creditable.data ? (
                  <IssueCreditNote
                    invoice={i}
                    creditable={creditable.data}
                    onIssued={(n) => {
                      setIssued(n);
                      setCrediting(false);
                      setCredits((x) => x + 1);
                      inv.reload();
                    }}
                    onRefused={() => (setCredits((x) => x + 1), inv.reload())}
                  />
                ) : (
                  <Loading what="what is left to credit" />
                )}
              </>
            ) : creditableStatus && creditable.data ? (
              <p class="muted small">
                Left to credit: <strong data-testid="creditable-remaining"><Money minor={creditable.data.remaining} currency={i.currency} /></strong> (tax included)
              </p>
            ) : null}
            <CreditNotesOf invoiceId={id} reloadKey={credits} />
          </Card>
          <Card title="Payments">
            <ProblemBox error={payments.error} />
            {payments.data ? <Table label="Payments of this invoice" rows={payments.data.data} columns={paymentColumns.filter((c) => c.label !== "Customer")} /> : null}
          </Card>
          <ConfirmDialog open={voiding} title={`Void invoice ${i.number ?? i.id}`} confirmLabel="Void invoice" confirmWord="VOID" reason danger onConfirm={async (reason) => (await call(api.POST("/api/v1/invoices/{id}/void", { params: { path: { id } }, body: { reason } })), inv.reload())} onClose={() => setVoiding(false)}>
            <p>A void invoice is never collected. This cannot be undone.</p>
          </ConfirmDialog>
        </>
      ) : null}
    </div>
  );
}
