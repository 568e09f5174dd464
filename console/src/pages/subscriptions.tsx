import { useState } from "preact/hooks";
import { api, ApiProblem, call, opt, type Answer, type Query, type Schema } from "../api";
import { can, type Session } from "../auth";
import { Chart } from "../chart";
import { fmtDate, fmtDay, fmtMoney, fmtNum } from "../format";
import { ActionButton, Badge, Card, ConfirmDialog, DL, Loading, Money, PagedTable, ProblemBox, Table, useAsync, type Column } from "../ui";
import { invoiceColumns, type Invoice } from "./invoices";

export type Subscription = Schema["Subscription"];
type Price = Schema["Plan"]["prices"][number];
type UsageSummary = Schema["UsageSummary"];
type Alert = Schema["UsageAlert"];
type SubscriptionStatus = NonNullable<Query<"/api/v1/subscriptions">["status"]>;

export const subscriptionColumns: Column<Subscription>[] = [
  { label: "Subscription", cell: (s) => <a href={`/console/subscriptions/${s.id}`}><code>{s.id}</code></a> },
  { label: "Customer", cell: (s) => <a href={`/console/customers/${s.customerId}`}>{s.customerId}</a> },
  { label: "Plan", cell: (s) => `${s.planId} v${s.planVersion}` },
  { label: "Status", cell: (s) => <Badge status={s.status} /> },
  { label: "Period ends", cell: (s) => fmtDay(s.currentPeriodEnd) },
];

const STATUSES: (SubscriptionStatus | "")[] = ["", "trialing", "active", "past_due", "paused", "canceled"];

export function Subscriptions() {
  const [status, setStatus] = useState<SubscriptionStatus | "">("");
  const [customerId, setCustomerId] = useState("");
  return (
    <div class="page">
      <div class="page-head">
        <h1>Subscriptions</h1>
      </div>
      <Card>
        <div class="filters">
          <label class="field">
            <span>Status</span>
            <select value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value as SubscriptionStatus | "")}>
              {STATUSES.map((s) => (
                <option key={s} value={s}>
                  {s || "Any status"}
                </option>
              ))}
            </select>
          </label>
          <label class="field grow">
            <span>Customer id</span>
            <input value={customerId} onChange={(e) => setCustomerId((e.target as HTMLInputElement).value.trim())} placeholder="cus_…" />
          </label>
        </div>
        <PagedTable<Subscription>
          label="Subscriptions"
          load={(page) => call(api.GET("/api/v1/subscriptions", { params: { query: { status: opt(status), customerId: customerId || undefined, ...page } } }))}
          filters={[status, customerId]}
          columns={subscriptionColumns}
        />
      </Card>
    </div>
  );
}

function priceText(p: Price, currency: string): string {
  if (p.type === "flat") return `${fmtMoney(p.amountMinor, currency)} flat, billed in ${p.billing}`;
  const model =
    p.pricingModel === "per_unit"
      ? `${p.unitAmount} ${currency} per unit`
      : p.pricingModel === "package"
        ? `${p.packageAmount} ${currency} per ${p.packageSize} units`
        : `${p.pricingModel}: ${(p.tiers ?? []).map((t) => `${t.upTo === null ? "rest" : `≤ ${fmtNum(t.upTo)}`} @ ${t.unitAmount}${t.flatAmount ? ` + ${t.flatAmount}` : ""}`).join(", ")}`;
  return `${p.meterId} (${p.aggregation}) — ${model}${p.freeUnits ? `, ${p.freeUnits} free` : ""}`;
}

export function SubscriptionDetail({ id, session }: { id: string; session: Session }) {
  const sub = useAsync(() => call(api.GET("/api/v1/subscriptions/{id}", { params: { path: { id } } })), [id]);
  const s = sub.data;
  const plan = useAsync(() => (s ? call(api.GET("/api/v1/plans/{id}", { params: { path: { id: s.planId }, query: { version: s.planVersion } } })) : Promise.resolve(undefined)), [s?.planId, s?.planVersion]);
  const usage = useAsync(() => call(api.GET("/api/v1/usage/{subscriptionId}/summary", { params: { path: { subscriptionId: id } } })), [id, s?.status]);
  const alerts = useAsync(() => call(api.GET("/api/v1/subscriptions/{id}/usage-alerts", { params: { path: { id } } })), [id]);
  const [dialog, setDialog] = useState<null | "pause" | "cancel" | "plan">(null);
  const operate = can.operateSubscriptions(session.role);
  const after = () => sub.reload();
  return (
    <div class="page">
      <div class="page-head">
        <h1>
          Subscription <code>{id}</code> {s ? <Badge status={s.status} /> : null}
        </h1>
        <a href="/console/subscriptions">← Subscriptions</a>
      </div>
      <ProblemBox error={sub.error} />
      {sub.loading && !s ? <Loading /> : null}
      {s ? (
        <>
          <Card
            title="Subscription"
            actions={
              operate ? (
                <div class="button-row" data-testid="subscription-actions">
                  {s.status === "paused" ? (
                    <ActionButton label="Resume" class="primary" run={async () => (await call(api.POST("/api/v1/subscriptions/{id}/resume", { params: { path: { id } } })), after())} />
                  ) : (
                    <button type="button" disabled={s.status === "canceled"} onClick={() => setDialog("pause")}>
                      Pause
                    </button>
                  )}
                  <button type="button" disabled={s.status === "canceled"} onClick={() => setDialog("plan")}>
                    Change plan
                  </button>
                  <button type="button" class="danger" disabled={s.status === "canceled"} onClick={() => setDialog("cancel")}>
                    Cancel
                  </button>
                </div>
              ) : (
                <span class="muted small">Read only for {session.role}</span>
              )
            }
          >
            <DL
              items={[
                ["Customer", <a href={`/console/customers/${s.customerId}`}>{s.customerId}</a>],
                ["Plan", `${plan.data?.name ?? s.planId} (v${s.planVersion}) × ${s.quantity}`],
                ["Current period", `${fmtDate(s.currentPeriodStart)} → ${fmtDate(s.currentPeriodEnd)}`],
                ["Trial ends", fmtDate(s.trialEnd)],
                ["Paused", s.status === "paused" ? `${s.pauseReason ?? ""}${s.pausedUntil ? ` until ${fmtDate(s.pausedUntil)}` : ""}` : "—"],
                ["Cancels at period end", s.cancelAtPeriodEnd ? "yes" : "no"],
                ["Discount", s.discountPercent ? `${s.discountPercent} %` : "—"],
                ["Pending change", s.pendingChange ? `${s.pendingChange.planId} v${s.pendingChange.planVersion} × ${s.pendingChange.quantity} on ${fmtDate(s.pendingChange.effectiveAt)}` : "—"],
                ["Test clock", s.testClockId ?? "—"],
              ]}
            />
          </Card>
          <Card title="Plan and prices">
            <ProblemBox error={plan.error} />
            {plan.data ? (
              <ul class="prices">
                {plan.data.prices.map((p) => (
                  <li key={p.id}>
                    <Badge status={p.type} /> {priceText(p, plan.data!.currency)}
                  </li>
                ))}
                <li class="muted">
                  Every {plan.data.intervalCount > 1 ? `${plan.data.intervalCount} ` : ""}
                  {plan.data.interval}
                  {plan.data.intervalCount > 1 ? "s" : ""}, {plan.data.currency}
                </li>
              </ul>
            ) : null}
          </Card>
          <Card title="Usage this period">
            <ProblemBox error={usage.error} />
            {usage.data ? <UsageChart id={id} usage={usage.data} alerts={alerts.data?.data ?? []} /> : null}
          </Card>
          <Card title="Invoices">
            <PagedTable<Invoice> label="Invoices" load={(page) => call(api.GET("/api/v1/invoices", { params: { query: { subscriptionId: id, ...page } } }))} filters={[id]} pageSize={10} columns={invoiceColumns.filter((c) => c.label !== "Customer")} />
          </Card>
          <ConfirmDialog open={dialog === "pause"} title="Pause subscription" confirmLabel="Pause" reason onConfirm={async (reason) => (await call(api.POST("/api/v1/subscriptions/{id}/pause", { params: { path: { id } }, body: { reason } })), after())} onClose={() => setDialog(null)}>
            <p>Billing stops until the subscription is resumed.</p>
          </ConfirmDialog>
          <CancelDialog open={dialog === "cancel"} id={id} onDone={after} onClose={() => setDialog(null)} />
          <ChangePlanDialog open={dialog === "plan"} sub={s} onDone={after} onClose={() => setDialog(null)} />
        </>
      ) : null}
    </div>
  );
}

function UsageChart({ id, usage, alerts }: { id: string; usage: UsageSummary; alerts: Alert[] }) {
  if (!usage.meters.length) return <p class="muted">This plan has no metered prices.</p>;
  const threshold = (m: string) => {
    const t = alerts.filter((a) => a.meterId === m).map((a) => Number(a.threshold));
    return t.length ? Math.max(...t) : null;
  };
  return (
    <>
      <p class="muted small">
        {fmtDate(usage.period.start)} → {fmtDate(usage.period.end)} · would bill {fmtMoney(usage.total.amountMinor, usage.total.currency)}
      </p>
      <Chart
        name={`usage-${id}`}
        title="Usage per meter against its alert threshold"
        x={usage.meters.map((_, i) => i)}
        xLabels={usage.meters.map((m) => m.meterId)}
        format={(v) => fmtNum(v)}
        axisFormat={(v) => new Intl.NumberFormat(undefined, { notation: "compact" }).format(v)}
        series={[
          { label: "Used", values: usage.meters.map((m) => Number(m.value)), color: "#3b5bdb", kind: "bars" },
          { label: "Alert threshold", values: usage.meters.map((m) => threshold(m.meterId)), color: "#e03131", kind: "points" },
        ]}
      />
      <Table
        label="Usage per meter"
        rows={usage.meters.map((m) => ({ ...m, id: m.meterId }))}
        columns={[
          { label: "Meter", cell: (m) => m.meterId },
          { label: "Used", class: "num", cell: (m) => fmtNum(Number(m.value)) },
          { label: "Events", class: "num", cell: (m) => fmtNum(m.eventCount) },
          { label: "Threshold", class: "num", cell: (m) => (threshold(m.meterId) === null ? "—" : fmtNum(threshold(m.meterId)!)) },
          { label: "Bills", class: "num", cell: (m) => <Money minor={m.price.amountMinor} currency={m.price.currency} /> },
          { label: "How", cell: (m) => <span class="small">{m.price.explanation}</span> },
        ]}
      />
    </>
  );
}

function CancelDialog({ open, id, onDone, onClose }: { open: boolean; id: string; onDone: () => void; onClose: () => void }) {
  const [atEnd, setAtEnd] = useState(true);
  return (
    <ConfirmDialog open={open} title="Cancel subscription" confirmLabel={atEnd ? "Cancel at period end" : "Cancel now"} danger reason confirmWord={atEnd ? undefined : "CANCEL"} onConfirm={async (reason) => (await call(api.POST("/api/v1/subscriptions/{id}/cancel", { params: { path: { id } }, body: { reason, cancelAtPeriodEnd: atEnd } })), onDone())} onClose={onClose}>
      <fieldset class="radios">
        <legend>When</legend>
        <label>
          <input type="radio" name="when" checked={atEnd} onChange={() => setAtEnd(true)} /> At the end of the current period
        </label>
        <label>
          <input type="radio" name="when" checked={!atEnd} onChange={() => setAtEnd(false)} /> Now, with a final invoice
        </label>
      </fieldset>
    </ConfirmDialog>
  );
}

/** Change plan: pick the plan, read the proration preview the API computes, then confirm the same change. */
function ChangePlanDialog({ open, sub, onDone, onClose }: { open: boolean; sub: Subscription; onDone: () => void; onClose: () => void }) {
  const plans = useAsync(() => (open ? call(api.GET("/api/v1/plans", { params: { query: { limit: 100 } } })) : Promise.resolve(undefined)), [open]);
  const [planId, setPlanId] = useState("");
  const [quantity, setQuantity] = useState(sub.quantity);
  const [when, setWhen] = useState<"now" | "next_billing_cycle">("now");
  const [preview, setPreview] = useState<Answer<"/api/v1/subscriptions/{id}/plan/preview"> | null>(null);
  const [error, setError] = useState<ApiProblem | null>(null);
  const body = { newPlanId: planId, quantity, effectiveDate: when, prorate: true };
  const load = async () => {
    setPreview(null);
    setError(null);
    try {
      setPreview(await call(api.GET("/api/v1/subscriptions/{id}/plan/preview", { params: { path: { id: sub.id }, query: { ...body, prorate: "true" } } })));
    } catch (e) {
      setError(e as ApiProblem);
    }
  };
  const choices = (plans.data?.data ?? []).filter((p) => p.currency === sub.currency && p.id !== sub.planId);
  return (
    <ConfirmDialog
      open={open}
      title="Change plan"
      confirmLabel="Confirm plan change"
      ready={preview !== null}
      onConfirm={async () => {
        if (!preview) throw new ApiProblem({ status: 0, detail: "Preview the change first." });
        await call(api.PUT("/api/v1/subscriptions/{id}/plan", { params: { path: { id: sub.id } }, body }));
        onDone();
      }}
      onClose={() => {
        setPreview(null);
        setPlanId("");
        onClose();
      }}
    >
      <label class="field">
        <span>New plan ({sub.currency})</span>
        <select name="plan" value={planId} onChange={(e) => (setPlanId((e.target as HTMLSelectElement).value), setPreview(null))} required>
          <option value="">Choose a plan…</option>
          {choices.map((p) => (
            <option key={p.id} value={p.id}>
              {p.name} ({p.id}) — {p.prices.filter((x) => x.type === "flat").map((x) => (x.type === "flat" ? fmtMoney(x.amountMinor, p.currency) : "")).join(" + ") || "usage only"} / {p.interval}
            </option>
          ))}
        </select>
      </label>
      <div class="row">
        <label class="field">
          <span>Quantity</span>
          <input type="number" name="quantity" min={1} value={quantity} onInput={(e) => (setQuantity(Math.max(1, Number((e.target as HTMLInputElement).value) || 1)), setPreview(null))} />
        </label>
        <label class="field">
          <span>Effective</span>
          <select value={when} onChange={(e) => (setWhen((e.target as HTMLSelectElement).value as typeof when), setPreview(null))}>
            <option value="now">Now (prorated)</option>
            <option value="next_billing_cycle">At the next billing cycle</option>
          </select>
        </label>
      </div>
      <button type="button" onClick={load} disabled={!planId}>
        Preview proration
      </button>
      <ProblemBox error={error} />
      {preview ? (
        <div class="preview" data-testid="proration-preview" aria-live="polite">
          <p>
            {preview.scheduled ? `Scheduled for ${fmtDate(preview.effectiveAt)}: no proration.` : `Effective ${fmtDate(preview.effectiveAt)}.`} Net on the next invoice:{" "}
            <strong data-testid="proration-net">
              <Money minor={preview.net.amountMinor} currency={preview.net.currency} />
            </strong>
          </p>
          {preview.prorationLines.length ? (
            <Table
              label="Proration lines"
              rows={preview.prorationLines.map((l, i) => ({ ...l, id: String(i) }))}
              columns={[
                { label: "Line", cell: (l) => l.description },
                { label: "Amount", class: "num", cell: (l) => <Money minor={l.amountMinor} currency={sub.currency} /> },
                { label: "How", cell: (l) => <span class="small">{l.computation}</span> },
              ]}
            />
          ) : null}
        </div>
      ) : null}
    </ConfirmDialog>
  );
}
