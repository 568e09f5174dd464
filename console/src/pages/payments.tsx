import { useState } from "preact/hooks";
import { api, ApiProblem, call, opt, type Query, type Schema } from "../api";
import { can, type Session } from "../auth";
import { fmtDate, fmtMoney, parseMoney } from "../format";
import { ActionButton, Badge, Card, DL, Empty, Loading, Money, PagedTable, ProblemBox, Table, useAsync, type Column } from "../ui";

export type Payment = Schema["Payment"];
type Refund = Schema["Refund"];
type PaymentStatus = NonNullable<Query<"/api/v1/payments">["status"]>;

export const paymentColumns: Column<Payment>[] = [
  { label: "Payment", cell: (p) => <a href={`/console/payments/${p.id}`}><code>{p.id}</code></a> },
  { label: "Customer", cell: (p) => <a href={`/console/customers/${p.customerId}`}>{p.customerId}</a> },
  { label: "Invoice", cell: (p) => <a href={`/console/invoices/${p.invoiceId}`}>{p.invoiceId}</a> },
  { label: "Status", cell: (p) => <Badge status={p.status} /> },
  { label: "Amount", class: "num", cell: (p) => <Money minor={p.amountMinor} currency={p.currency} /> },
  { label: "Refunded", class: "num", cell: (p) => (p.amountRefundedMinor ? <Money minor={p.amountRefundedMinor} currency={p.currency} /> : "—") },
  { label: "Failure", cell: (p) => (p.failureCode ? <span class="small">{p.failureCode}</span> : "") },
  { label: "Created", cell: (p) => fmtDate(p.createdAt) },
];

const refundColumns: Column<Refund>[] = [
  { label: "Refund", cell: (r) => <code>{r.id}</code> },
  { label: "Payment", cell: (r) => <a href={`/console/payments/${r.paymentId}`}>{r.paymentId}</a> },
  { label: "Status", cell: (r) => <Badge status={r.status} /> },
  { label: "Amount", class: "num", cell: (r) => <Money minor={r.amountMinor} currency={r.currency} /> },
  { label: "Reason", cell: (r) => r.reason },
  { label: "By", cell: (r) => r.createdBy },
  { label: "Created", cell: (r) => fmtDate(r.createdAt) },
];

export function Payments({ session }: { session: Session }) {
  const [status, setStatus] = useState<PaymentStatus | "">("");
  const [tab, setTab] = useState<"payments" | "refunds" | "retries" | "dlq">("payments");
  const tabs: [typeof tab, string][] = [
    ["payments", "Payments"],
    ["refunds", "Refunds"],
    ["retries", "Retry queue"],
    ...(can.admin(session.role) ? ([["dlq", "Dead letters"]] as [typeof tab, string][]) : []),
  ];
  return (
    <div class="page">
      <div class="page-head">
        <h1>Payments and refunds</h1>
      </div>
      <div class="tabs" role="tablist" aria-label="Payment views">
        {tabs.map(([k, label]) => (
          <button key={k} type="button" role="tab" aria-selected={tab === k} onClick={() => setTab(k)}>
            {label}
          </button>
        ))}
      </div>
      {tab === "payments" ? (
        <Card>
          <div class="filters">
            <label class="field">
              <span>Status</span>
              <select value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value as PaymentStatus | "")}>
                {(["", "pending", "parked", "processing", "succeeded", "failed", "canceled"] satisfies (PaymentStatus | "")[]).map((s) => (
                  <option key={s} value={s}>
                    {s || "Any status"}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <PagedTable<Payment> label="Payments" load={(page) => call(api.GET("/api/v1/payments", { params: { query: { status: opt(status), ...page } } }))} filters={[status]} columns={paymentColumns} />
        </Card>
      ) : null}
      {tab === "refunds" ? (
        <Card>
          <PagedTable<Refund> label="Refunds" load={(page) => call(api.GET("/api/v1/refunds", { params: { query: page } }))} columns={refundColumns} />
        </Card>
      ) : null}
      {tab === "retries" ? <RetryQueue session={session} /> : null}
      {tab === "dlq" ? <DeadLetters /> : null}
    </div>
  );
}

function RetryQueue({ session }: { session: Session }) {
  const q = useAsync(() => call(api.GET("/api/v1/payments/retry-queue")), []);
  return (
    <Card title="Retry queue">
      <ProblemBox error={q.error} />
      {q.data ? (
        q.data.data.length ? (
          <Table
            label="Payments waiting for a retry"
            rows={q.data.data}
            columns={[
              ...paymentColumns.slice(0, 5),
              { label: "Next attempt", cell: (p) => `#${p.nextAttempt} at ${fmtDate(p.nextRetryAt)}` },
              { label: "Left", class: "num", cell: (p) => `${p.attemptsLeft} of ${q.data!.maxAttempts}` },
              { label: "", cell: (p) => (can.moveMoney(session.role) ? <ActionButton label="Retry now" run={async () => (await call(api.POST("/api/v1/payments/{id}/retry", { params: { path: { id: p.id } }, body: {} })), q.reload())} /> : null) },
            ]}
          />
        ) : (
          <Empty>No payment is waiting for a retry.</Empty>
        )
      ) : null}
    </Card>
  );
}

function DeadLetters() {
  const q = useAsync(() => call(api.GET("/admin/dlq", { params: { query: { limit: 50 } } })), []);
  return (
    <Card title="Dead letters">
      <ProblemBox error={q.error} />
      {q.data ? (
        q.data.data.length ? (
          <Table
            label="Dead letters"
            rows={q.data.data}
            columns={[
              { label: "Message", cell: (d) => <code>{d.messageId}</code> },
              { label: "Attempts", class: "num", cell: (d) => d.attempts },
              { label: "Received", cell: (d) => fmtDate(d.receivedAt) },
              { label: "Body", cell: (d) => <code class="small wrap">{JSON.stringify(d.body).slice(0, 200)}</code> },
            ]}
          />
        ) : (
          <Empty>No dead letters: every message was processed.</Empty>
        )
      ) : null}
    </Card>
  );
}

export function PaymentDetail({ id, session }: { id: string; session: Session }) {
  const pay = useAsync(() => call(api.GET("/api/v1/payments/{id}", { params: { path: { id } } })), [id]);
  const refunds = useAsync(() => call(api.GET("/api/v1/refunds", { params: { query: { paymentId: id, limit: 50 } } })), [id, pay.data?.amountRefundedMinor]);
  const p = pay.data;
  const refundable = p ? p.amountMinor - p.amountRefundedMinor : 0;
  return (
    <div class="page">
      <div class="page-head">
        <h1>
          Payment <code>{id}</code> {p ? <Badge status={p.status} /> : null}
        </h1>
        <a href="/console/payments">← Payments</a>
      </div>
      <ProblemBox error={pay.error} />
      {pay.loading && !p ? <Loading /> : null}
      {p ? (
        <>
          <Card title="Payment">
            <DL
              items={[
                ["Amount", <Money minor={p.amountMinor} currency={p.currency} />],
                ["Refunded", <Money minor={p.amountRefundedMinor} currency={p.currency} />],
                ["Refundable", <strong data-testid="refundable"><Money minor={refundable} currency={p.currency} /></strong>],
                ["Customer", <a href={`/console/customers/${p.customerId}`}>{p.customerId}</a>],
                ["Invoice", <a href={`/console/invoices/${p.invoiceId}`}>{p.invoiceId}</a>],
                ["Gateway", `${p.gateway ?? "—"} · ${p.paymentMethod ?? "—"}`],
                ["Attempt", String(p.attempt)],
                ["Failure", p.failureCode ? `${p.failureCode}: ${p.failureMessage ?? ""}` : "—"],
                ["Created", fmtDate(p.createdAt)],
              ]}
            />
          </Card>
          {p.status === "succeeded" && can.moveMoney(session.role) ? <RefundForm payment={p} refundable={refundable} onDone={() => pay.reload()} /> : null}
          <Card title="Refunds">
            <ProblemBox error={refunds.error} />
            {refunds.data ? refunds.data.data.length ? <Table label="Refunds of this payment" rows={refunds.data.data} columns={refundColumns.filter((c) => c.label !== "Payment")} /> : <Empty>No refunds.</Empty> : null}
          </Card>
        </>
      ) : null}
    </div>
  );
}

/** A refund of at most what is still refundable; the amount is checked here and again by the API. */
function RefundForm({ payment, refundable, onDone }: { payment: Payment; refundable: number; onDone: () => void }) {
  const [amount, setAmount] = useState("");
  const [reason, setReason] = useState("requested_by_customer");
  const [error, setError] = useState<ApiProblem | null>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string | null>(null);
  const minor = amount ? parseMoney(amount, payment.currency) : null;
  const invalid = !amount ? null : minor === null ? `Enter an amount in ${payment.currency} with at most its decimals.` : minor <= 0 ? "The amount must be positive." : minor > refundable ? `At most ${fmtMoney(refundable, payment.currency)} can be refunded.` : null;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (invalid || minor === null) return;
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const r = await call(api.POST("/api/v1/refunds", { body: { paymentId: payment.id, amount: amount.trim(), reason } }));
      setDone(`Refund ${r.id} of ${fmtMoney(r.amountMinor, payment.currency)} created.`);
      setAmount("");
      onDone();
    } catch (err) {
      setError(err as ApiProblem);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Card title="Refund">
      {refundable <= 0 ? (
        <p class="muted">This payment is fully refunded.</p>
      ) : (
        <form class="filters" onSubmit={submit}>
          <label class="field">
            <span>Amount ({payment.currency}, at most {fmtMoney(refundable, payment.currency)})</span>
            <input name="amount" inputMode="decimal" value={amount} onInput={(e) => setAmount((e.target as HTMLInputElement).value)} aria-invalid={invalid ? true : undefined} aria-describedby="refund-hint" />
          </label>
          <label class="field">
            <span>Reason</span>
            <select value={reason} onChange={(e) => setReason((e.target as HTMLSelectElement).value)}>
              <option value="requested_by_customer">Requested by customer</option>
              <option value="duplicate">Duplicate</option>
              <option value="fraudulent">Fraudulent</option>
              <option value="service_issue">Service issue</option>
            </select>
          </label>
          <button type="submit" class="primary" disabled={busy || !amount || invalid !== null}>
            {busy ? "Refunding…" : "Refund"}
          </button>
          <div id="refund-hint" class={invalid ? "field-error" : "muted small"} role={invalid ? "alert" : undefined}>
            {invalid ?? ""}
          </div>
        </form>
      )}
      <ProblemBox error={error} />
      {done ? (
        <p class="ok" role="status">
          {done}
        </p>
      ) : null}
    </Card>
  );
}

