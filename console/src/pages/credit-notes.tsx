// Credit notes: the list (cursor-paged, filtered as the API allows), a note's detail with its PDF and Void, and the
// "Issue credit note" form of an invoice. What is left to credit is the invoice's own `creditable`
// figures (total and per line); the API checks everything again and its refusal is shown as it gave it.
import { useState } from "preact/hooks";
import { api, ApiProblem, call, opt, type Query, type Schema } from "../api";
import { can, type Session } from "../auth";
import { fmtDate, fmtMoney, parseMoney } from "../format";
import { Badge, Card, ConfirmDialog, DL, Loading, Money, PagedTable, ProblemBox, Table, useAsync, type Column } from "../ui";

export type CreditNote = Schema["CreditNote"];
type Invoice = Schema["Invoice"];
type Reason = Schema["CreateCreditNote"]["reason"];
type NoteStatus = NonNullable<Query<"/api/v1/credit-notes">["status"]>;

const REASONS: [Reason, string][] = [
  ["product_unsatisfactory", "Product unsatisfactory"],
  ["order_change", "Order change"],
  ["duplicate", "Duplicate"],
  ["fraudulent", "Fraudulent"],
];

/** Where the note's total went: off the amount due, refunded, or to the customer's credit balance. */
function split(n: CreditNote): string {
  const parts: string[] = [];
  if (n.invoiceCredit.amountMinor) parts.push(`${fmtMoney(n.invoiceCredit.amountMinor, n.currency)} off the amount due`);
  if (n.refund.amountMinor) parts.push(`${fmtMoney(n.refund.amountMinor, n.currency)} refunded`);
  if (n.creditBalance.amountMinor) parts.push(`${fmtMoney(n.creditBalance.amountMinor, n.currency)} to credit balance`);
  return parts.join(" · ") || "—";
}

export const creditNoteColumns: Column<CreditNote>[] = [
  { label: "Credit note", cell: (n) => <a href={`/console/credit-notes/${n.id}`}>{n.number}</a> },
  { label: "Invoice", cell: (n) => <a href={`/console/invoices/${n.invoiceId}`}>{n.invoiceId}</a> },
  { label: "Customer", cell: (n) => <a href={`/console/customers/${n.customerId}`}>{n.customerId}</a> },
  { label: "Status", cell: (n) => <Badge status={n.status} /> },
  { label: "Reason", cell: (n) => n.reason.replace(/_/g, " ") },
  { label: "Total", class: "num", cell: (n) => <Money minor={n.total.amountMinor} currency={n.currency} /> },
  { label: "Applied as", cell: (n) => <span class="small">{split(n)}</span> },
  { label: "Issued", cell: (n) => fmtDate(n.createdAt) },
];

export function CreditNotes() {
  const [f, setF] = useState<{ status: NoteStatus | ""; customerId: string; invoiceId: string }>({ status: "", customerId: "", invoiceId: "" });
  const set = (k: keyof typeof f) => (e: Event) => setF({ ...f, [k]: (e.target as HTMLInputElement).value.trim() });
  const query = { status: opt(f.status), customerId: f.customerId || undefined, invoiceId: f.invoiceId || undefined };
  return (
    <div class="page">
      <div class="page-head">
        <h1>Credit notes</h1>
      </div>
      <Card>
        <div class="filters">
          <label class="field">
            <span>Status</span>
            <select value={f.status} onChange={set("status")}>
              <option value="">Any status</option>
              <option value="issued">issued</option>
              <option value="void">void</option>
            </select>
          </label>
          <label class="field grow">
            <span>Customer id</span>
            <input value={f.customerId} onChange={set("customerId")} placeholder="cus_…" />
          </label>
          <label class="field grow">
            <span>Invoice id</span>
            <input value={f.invoiceId} onChange={set("invoiceId")} placeholder="inv_…" />
          </label>
        </div>
        <PagedTable<CreditNote> label="Credit notes" load={(page) => call(api.GET("/api/v1/credit-notes", { params: { query: { ...query, ...page } } }))} filters={[query]} columns={creditNoteColumns} empty="No credit notes." />
      </Card>
    </div>
  );
}

/** Downloads an authenticated PDF (a plain link would not carry the bearer token). */
async function downloadPdf(load: () => Promise<Blob>, filename: string): Promise<void> {
  const url = URL.createObjectURL(await load());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export const creditNotePdf = (n: { id: string; number: string }) =>
  downloadPdf(() => call(api.GET("/api/v1/credit-notes/{id}/pdf", { params: { path: { id: n.id } }, parseAs: "blob" })), `${n.number}.pdf`);
export const invoicePdf = (i: { id: string; number: string | null }) =>
  downloadPdf(() => call(api.GET("/api/v1/invoices/{id}/pdf", { params: { path: { id: i.id } }, parseAs: "blob" })), `${i.number ?? i.id}.pdf`);

export function CreditNoteDetail({ id, session }: { id: string; session: Session }) {
  const note = useAsync(() => call(api.GET("/api/v1/credit-notes/{id}", { params: { path: { id } } })), [id]);
  const [voiding, setVoiding] = useState(false);
  const [pdfError, setPdfError] = useState<ApiProblem | null>(null);
  const n = note.data;
  return (
    <div class="page">
      <div class="page-head">
        <h1>
          Credit note {n?.number ?? <code>{id}</code>} {n ? <Badge status={n.status} /> : null}
        </h1>
        <a href="/console/credit-notes">← Credit notes</a>
      </div>
      <ProblemBox error={note.error} />
      {note.loading && !n ? <Loading /> : null}
      {n ? (
        <>
          <Card
            title="Credit note"
            actions={
              <div class="button-row">
                <button type="button" onClick={() => creditNotePdf(n).catch((e) => setPdfError(e as ApiProblem))}>
                  PDF
                </button>
                {n.status === "issued" ? (
                  <button type="button" class="danger" disabled={!can.moveMoney(session.role)} title={can.moveMoney(session.role) ? undefined : "Finance and admin only"} onClick={() => setVoiding(true)}>
                    Void
                  </button>
                ) : null}
              </div>
            }
          >
            <ProblemBox error={pdfError} />
            <DL
              items={[
                ["Invoice", <a href={`/console/invoices/${n.invoiceId}`}>{n.invoiceId}</a>],
                ["Customer", <a href={`/console/customers/${n.customerId}`}>{n.customerId}</a>],
                ["Reason", n.reason.replace(/_/g, " ")],
                ["Memo", n.memo ?? "—"],
                ["Total", <strong><Money minor={n.total.amountMinor} currency={n.currency} /></strong>],
                ["Applied as", split(n)],
                ["Refund", n.refund.refundId ? <code>{n.refund.refundId}</code> : "—"],
                ["Issued", `${fmtDate(n.createdAt)} by ${n.createdBy}`],
                ["Voided", fmtDate(n.voidedAt)],
              ]}
            />
          </Card>
          <Card title="Lines">
            <Table
              label="Credit note lines"
              rows={n.lines ?? []}
              columns={[
                { label: "Line", cell: (l) => l.description },
                { label: "Quantity", class: "num", cell: (l) => l.quantity ?? "—" },
                { label: "Amount", class: "num", cell: (l) => <Money minor={l.amount.amountMinor} currency={n.currency} /> },
                { label: "Tax", class: "num", cell: (l) => <Money minor={l.tax.amountMinor} currency={n.currency} /> },
                { label: "Total", class: "num", cell: (l) => <Money minor={l.total.amountMinor} currency={n.currency} /> },
              ]}
            />
          </Card>
          <ConfirmDialog open={voiding} title={`Void credit note ${n.number}`} confirmLabel="Void credit note" confirmWord="VOID" danger onConfirm={async () => (await call(api.POST("/api/v1/credit-notes/{id}/void", { params: { path: { id } } })), note.reload())} onClose={() => setVoiding(false)}>
            <p>The amount due goes back on the invoice and the credit it granted is taken back. A note that refunded money, or whose credit was used, cannot be voided: the API says why.</p>
          </ConfirmDialog>
        </>
      ) : null}
    </div>
  );
}

/** What is left to credit on an invoice: the API's own `creditable` figures (the credit-note service checks the same). */
export type Creditable = {
  /** Total (tax included) still creditable; while the invoice is open, at most its amount due. */
  remaining: number;
  /** Per invoice line: pre-tax amount and tax left. */
  lines: Map<string, { left: number; taxLeft: number }>;
  /** Paid invoices: the most one payment can still refund. */
  refundable: number;
};

export async function loadCreditable(inv: Invoice): Promise<Creditable> {
  const payments = await call(api.GET("/api/v1/payments", { params: { query: { invoiceId: inv.id, status: "succeeded", limit: 100 } } }));
  const lines = new Map<string, { left: number; taxLeft: number }>();
  for (const l of inv.lines ?? []) {
    // Documents archived before `creditable` existed carry no per-line figure: nothing is offered on those lines.
    lines.set(l.id, l.creditable ? { left: l.creditable.amount.amountMinor, taxLeft: l.creditable.tax.amountMinor } : { left: 0, taxLeft: 0 });
  }
  return {
    remaining: inv.creditable.total.amountMinor,
    lines,
    refundable: Math.max(0, ...payments.data.map((p) => p.amountMinor - p.amountRefundedMinor)),
  };
}

/** The tax the API will credit with `amount` on a line: its proportion, or exactly what is left with the rest. */
const taxFor = (amount: number, line: Schema["InvoiceLine"], left: { left: number; taxLeft: number }) => {
  const net = line.amount.amountMinor - line.discount.amountMinor;
  return amount === left.left ? left.taxLeft : net > 0 ? Math.round((line.tax.amountMinor * amount) / net) : 0;
};

/**
 * "Issue credit note" for an open or paid invoice: an amount per line (at most what is left on it), a reason and a
 * memo; a paid invoice's total is split between a refund (at most what its payment can still refund) and the
 * customer's credit balance. Checked here as the API checks it; the API's refusal is shown as given.
 */
export function IssueCreditNote({ invoice, creditable, onIssued, onRefused }: { invoice: Invoice; creditable: Creditable; onIssued: (n: CreditNote) => void; onRefused: () => void }) {
  const cur = invoice.currency;
  const paid = invoice.status === "paid";
  const [amounts, setAmounts] = useState<Record<string, string>>({});
  const [reason, setReason] = useState<Reason>("product_unsatisfactory");
  const [memo, setMemo] = useState("");
  const [refund, setRefund] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiProblem | null>(null);
  const rows = (invoice.lines ?? []).filter((l) => (creditable.lines.get(l.id)?.left ?? 0) > 0);
  const asked = rows
    .map((l) => {
      const text = (amounts[l.id] ?? "").trim();
      const left = creditable.lines.get(l.id)!;
      const minor = text ? parseMoney(text, cur) : null;
      const problem = !text ? null : minor === null ? `Enter ${cur} with at most its decimals` : minor <= 0 ? "Must be more than 0" : minor > left.left ? `At most ${fmtMoney(left.left, cur)} is left on this line` : null;
      return { line: l, text, minor, problem, tax: minor && !problem ? taxFor(minor, l, left) : 0 };
    })
    .filter((a) => a.text);
  const subtotal = asked.reduce((s, a) => s + (a.problem ? 0 : a.minor!), 0);
  const total = subtotal + asked.reduce((s, a) => s + a.tax, 0);
  const ceiling = paid ? creditable.remaining : Math.min(creditable.remaining, invoice.amountDue.amountMinor);
  const refundMinor = paid && refund.trim() ? parseMoney(refund, cur) : 0;
  const refundProblem = !paid || !refund.trim() ? null : refundMinor === null ? `Enter ${cur} with at most its decimals` : refundMinor > total ? "The refund cannot exceed the note's total" : refundMinor > creditable.refundable ? `At most ${fmtMoney(creditable.refundable, cur)} can be refunded to the payment` : null;
  const totalProblem = total > ceiling ? `The note's total ${fmtMoney(total, cur)} exceeds the ${fmtMoney(ceiling, cur)} left to credit` : null;
  const ready = asked.length > 0 && asked.every((a) => !a.problem) && !totalProblem && !refundProblem && !busy;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!ready) return;
    setBusy(true);
    setError(null);
    try {
      const note = await call(
        api.POST("/api/v1/credit-notes", {
          body: {
            invoiceId: invoice.id,
            lines: asked.map((a) => ({ invoiceLineId: a.line.id, amount: a.text })),
            reason,
            ...(memo.trim() ? { memo: memo.trim() } : {}),
            ...(paid && refundMinor ? { refund: { amount: refund.trim() } } : {}),
          },
        }),
      );
      setAmounts({});
      setMemo("");
      setRefund("");
      onIssued(note);
    } catch (err) {
      setError(err instanceof ApiProblem ? err : new ApiProblem({ status: 0, detail: String(err) }));
      onRefused(); // what is left may have changed under us: show the API's figures again
    } finally {
      setBusy(false);
    }
  };
  if (!rows.length || creditable.remaining <= 0) return <p class="muted" data-testid="nothing-to-credit">Nothing is left to credit on this invoice.</p>;
  return (
    <form onSubmit={submit} aria-label="Issue credit note" class="credit-form">
      <p>
        Left to credit on this invoice: <strong data-testid="creditable-remaining"><Money minor={creditable.remaining} currency={cur} /></strong> (tax included)
        {!paid && ceiling < creditable.remaining ? <> · at most the amount due, {fmtMoney(ceiling, cur)}</> : null}
      </p>
      <Table
        label="Amounts to credit per line"
        rows={rows}
        columns={[
          { label: "Line", cell: (l) => l.description },
          { label: "Left to credit", class: "num", cell: (l) => <span data-testid={`line-left-${l.id}`}><Money minor={creditable.lines.get(l.id)!.left} currency={cur} /></span> },
          {
            label: `Credit (${cur}, before tax)`,
            cell: (l) => {
              const a = asked.find((x) => x.line.id === l.id);
              return (
                <label class="field inline">
                  <span class="sr-only">Credit on {l.description}</span>
                  <input name={`credit-${l.id}`} inputMode="decimal" value={amounts[l.id] ?? ""} placeholder="0" onInput={(e) => setAmounts({ ...amounts, [l.id]: (e.target as HTMLInputElement).value })} aria-invalid={a?.problem ? true : undefined} />
                  {a?.problem ? <span class="field-error" role="alert">{a.problem}</span> : null}
                </label>
              );
            },
          },
        ]}
      />
      <div class="filters">
        <label class="field">
          <span>Reason</span>
          <select value={reason} onChange={(e) => setReason((e.target as HTMLSelectElement).value as Reason)}>
            {REASONS.map(([v, label]) => (
              <option key={v} value={v}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label class="field grow">
          <span>Memo (printed on the note)</span>
          <input name="memo" value={memo} maxLength={1000} onInput={(e) => setMemo((e.target as HTMLInputElement).value)} />
        </label>
      </div>
      {paid ? (
        <div class="filters">
          <label class="field">
            <span>Refund to the payment method ({cur}, at most {fmtMoney(Math.min(creditable.refundable, total), cur)})</span>
            <input name="refund" inputMode="decimal" value={refund} placeholder="0" onInput={(e) => setRefund((e.target as HTMLInputElement).value)} aria-invalid={refundProblem ? true : undefined} />
          </label>
          <p class="muted small" data-testid="credit-split">
            {refundMinor ? fmtMoney(refundMinor, cur) : fmtMoney(0, cur)} refunded · {fmtMoney(Math.max(0, total - (refundMinor ?? 0)), cur)} to the customer's credit balance
          </p>
          {refundProblem ? <div class="field-error" role="alert">{refundProblem}</div> : null}
        </div>
      ) : (
        <p class="muted small">The note comes off the invoice's amount due.</p>
      )}
      <p>
        Credit note total: <strong data-testid="credit-total"><Money minor={total} currency={cur} /></strong> ({fmtMoney(subtotal, cur)} + tax {fmtMoney(total - subtotal, cur)})
      </p>
      {totalProblem ? <div class="field-error" role="alert">{totalProblem}</div> : null}
      <ProblemBox error={error} />
      <button type="submit" class="primary" disabled={!ready}>
        {busy ? "Issuing…" : "Issue credit note"}
      </button>
    </form>
  );
}

/** The credit notes of an invoice or a customer, newest first. */
export function CreditNotesOf({ invoiceId, customerId, reloadKey }: { invoiceId?: string; customerId?: string; reloadKey?: unknown }) {
  return (
    <PagedTable<CreditNote>
      label="Credit notes"
      load={(page) => call(api.GET("/api/v1/credit-notes", { params: { query: { invoiceId, customerId, ...page } } }))}
      filters={[invoiceId, customerId]}
      reloadKey={reloadKey}
      pageSize={10}
      empty="No credit notes."
      columns={creditNoteColumns.filter((c) => !(invoiceId && c.label === "Invoice") && c.label !== "Customer")}
    />
  );
}
