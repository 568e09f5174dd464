import { useState } from "preact/hooks";
import { api, call, type Schema } from "../api";
import { can, type Session } from "../auth";
import { Chart } from "../chart";
import { exponentOf, fmtDate, fmtDay, fmtMoney, fmtNum, fmtPct } from "../format";
import { Badge, Card, ConfirmDialog, Empty, Loading, Money, ProblemBox, Stat, Table, useAsync } from "../ui";

type Movement = Schema["MrrMovement"];
export type PaymentMode = Schema["PaymentMode"];

const COLORS = { new: "#2f9e44", expansion: "#74c69d", contraction: "#f59f00", churn: "#e03131", net: "#3b5bdb" };
const METER_COLORS = ["#3b5bdb", "#0ca678", "#f08c00", "#ae3ec9", "#e8590c", "#1098ad"];
const monthLabel = (m: string) => new Date(`${m}-01T00:00:00Z`).toLocaleString("en", { month: "short", year: "2-digit", timeZone: "UTC" });

export function Overview({ session }: { session: Session }) {
  // Revenue analytics are for finance and admin: other roles see the operational figures only.
  const fin = can.moveMoney(session.role);
  const finance = <T,>(load: () => Promise<T>) => (fin ? load() : Promise.resolve(undefined));
  const today = useAsync(() => finance(() => call(api.GET("/api/v1/analytics/revenue/today"))), [fin]);
  const month = useAsync(() => finance(() => call(api.GET("/api/v1/analytics/revenue/breakdown", { params: { query: { groupBy: "currency", period: "month" } } }))), [fin]);
  const mrr = useAsync(() => finance(() => call(api.GET("/api/v1/analytics/mrr"))), [fin]);
  const movement = useAsync(() => finance(() => call(api.GET("/api/v1/analytics/mrr/movement", { params: { query: { months: 12 } } }))), [fin]);
  const active = useAsync(() => call(api.GET("/api/v1/subscriptions/stats/active")), []);
  const churn = useAsync(() => call(api.GET("/api/v1/analytics/churn", { params: { query: { period: "month" } } })), []);
  const gw = useAsync(() => call(api.GET("/api/v1/gateways/metrics", { params: { query: { window: "24h" } } })), []);
  const failed = useAsync(() => call(api.GET("/api/v1/payments/failed/count")), []);
  const usage = useAsync(() => call(api.GET("/api/v1/usage/overview", { params: { query: { months: 12 } } })), []);
  const attempts = gw.data?.gateways.reduce((a, g) => ({ s: a.s + g.succeeded, f: a.f + g.failed }), { s: 0, f: 0 });
  const rate = attempts && attempts.s + attempts.f > 0 ? attempts.s / (attempts.s + attempts.f) : null;
  return (
    <div class="page">
      <div class="page-head">
        <h1>Overview</h1>
      </div>
      <PaymentModeCard session={session} />
      {!fin ? <p class="muted small" data-testid="finance-only">Revenue, MRR and its movement are shown to the finance and admin roles.</p> : null}
      <div class="grid stats">
        {fin ? (
        <>
        <Card title="Revenue today (UTC)">
          <ProblemBox error={today.error} />
          {today.data ? (
            today.data.currencies.length ? (
              today.data.currencies.map((c) => (
                <Stat key={c.currency} testid={`revenue-today-${c.currency}`} label={`${c.currency} net`} value={<Money minor={c.net.amountMinor} currency={c.currency} />} hint={`${c.collected.count} collected · ${c.refunded.count} refunded`} />
              ))
            ) : (
              <Empty>No money moved today.</Empty>
            )
          ) : today.loading ? (
            <Loading />
          ) : null}
        </Card>
        <Card title="This month">
          <ProblemBox error={month.error} />
          {month.data ? (
            month.data.totals.length ? (
              month.data.totals.map((t) => (
                <Stat key={t.currency} testid={`revenue-month-${t.currency}`} label={`${t.currency} collected`} value={<Money minor={t.collected.amountMinor} currency={t.currency} />} hint={<>invoiced {fmtMoney(t.invoiced.amountMinor, t.currency)} · {t.invoices} invoices</>} />
              ))
            ) : (
              <Empty>No invoices this month.</Empty>
            )
          ) : month.loading ? (
            <Loading />
          ) : null}
        </Card>
        <Card title="MRR">
          <ProblemBox error={mrr.error} />
          {mrr.data?.currencies.map((c) => (
            <Stat key={c.currency} testid={`mrr-${c.currency}`} label={`${c.currency} · ${c.subscriptions} subscriptions`} value={<Money minor={c.mrr.amountMinor} currency={c.currency} />} hint={<>ARR {fmtMoney(c.arr.amountMinor, c.currency)}</>} />
          ))}
          {mrr.data && !mrr.data.currencies.length ? <Empty>No recurring revenue yet.</Empty> : null}
        </Card>
        </>
        ) : null}
        <Card title="Payments (24 h)">
          <ProblemBox error={gw.error ?? failed.error} />
          <Stat testid="success-rate" label="Success rate" value={rate === null ? "—" : fmtPct(rate)} hint={attempts ? `${attempts.s} succeeded · ${attempts.f} failed` : undefined} />
          {failed.data ? (
            <Stat
              testid="failed-payments"
              label="Failed payments (open)"
              value={fmtNum(failed.data.count)}
              hint={Object.entries(failed.data.amountByCurrency)
                .map(([cur, m]) => fmtMoney(m.amountMinor, cur))
                .join(" · ")}
            />
          ) : null}
        </Card>
        <Card title="Churn, last month">
          <ProblemBox error={churn.error} />
          {churn.data ? <ChurnStats churn={churn.data} /> : null}
        </Card>
      </div>
      <div class="grid two">
        {fin ? (
        <Card title="MRR movement, last 12 months">
          <ProblemBox error={movement.error} />
          {movement.data ? (
            movement.data.currencies.length ? (
              <MovementChart currencies={movement.data.currencies} />
            ) : (
              <Empty>No subscriptions in the last 12 months.</Empty>
            )
          ) : movement.loading ? (
            <Loading />
          ) : null}
        </Card>
        ) : null}
        <Card title="Usage ingested per meter">
          <ProblemBox error={usage.error} />
          {usage.data ? (
            usage.data.meters.length ? (
              <div class="small-multiples">
                {usage.data.meters.map((m, i) => (
                  <Chart
                    key={m.meterId}
                    name={`usage-${m.meterId}`}
                    title={`${m.meterId}: units per month, all subscriptions`}
                    height={150}
                    x={usage.data!.months.map((_, j) => j)}
                    xLabels={usage.data!.months.map(monthLabel)}
                    format={(v) => fmtNum(Math.round(v * 100) / 100)}
                    axisFormat={compactNum}
                    series={[{ label: m.meterId, values: usage.data!.months.map((mo) => m.points.find((p) => p.month === mo)?.value ?? 0), color: METER_COLORS[i % METER_COLORS.length]!, kind: "bars" }]}
                  />
                ))}
              </div>
            ) : (
              <Empty>No usage recorded yet.</Empty>
            )
          ) : usage.loading ? (
            <Loading />
          ) : null}
        </Card>
      </div>
      <Card title="Active subscriptions by plan">
        <ProblemBox error={active.error} />
        {active.data ? (
          <Table
            label="Active subscriptions by plan"
            rows={active.data.byPlan.map((p) => ({ ...p, id: p.planId }))}
            columns={[
              { label: "Plan", cell: (p) => p.planName ?? p.planId },
              { label: "Active", class: "num", cell: (p) => p.byStatus.active ?? 0 },
              { label: "Trialing", class: "num", cell: (p) => p.byStatus.trialing ?? 0 },
              { label: "Past due", class: "num", cell: (p) => p.byStatus.past_due ?? 0 },
              { label: "Paused", class: "num", cell: (p) => p.byStatus.paused ?? 0 },
              { label: "Total", class: "num", cell: (p) => <strong>{p.total}</strong> },
              {
                label: "MRR",
                class: "num",
                cell: (p) =>
                  mrr.data?.currencies
                    .flatMap((c) => c.byPlan.filter((b) => b.planId === p.planId).map((b) => fmtMoney(b.mrr.amountMinor, c.currency)))
                    .join(" · ") || "—",
              },
            ]}
          />
        ) : null}
      </Card>
    </div>
  );
}

const plural = (n: number, one: string, many: string) => `${fmtNum(n)} ${n === 1 ? one : many}`;

/**
 * Churn as a finance reader expects it: of the subscriptions paying when the month began, how many ended since (the
 * rate's base is named, never "of 0"); subscriptions that started and ended inside the month are said apart.
 */
function ChurnStats({ churn }: { churn: Schema["Churn"] }) {
  const s = churn.subscriptions;
  const base = s.activeAtStart === 0 ? "No subscription was paying on " + fmtDay(churn.from) + ": no rate yet" : `${plural(s.canceled, "canceled", "canceled")} of the ${plural(s.activeAtStart, "subscription", "subscriptions")} paying on ${fmtDay(churn.from)}`;
  return (
    <>
      <Stat
        testid="churn-rate"
        label="Subscription churn"
        value={fmtPct(s.churnRate)}
        hint={
          <>
            <span data-testid="churn-base">{base}</span>
            {s.newAndCanceled > 0 ? <div data-testid="churn-new-canceled">{plural(s.newAndCanceled, "subscription", "subscriptions")} started and canceled within the month (not in the rate)</div> : null}
          </>
        }
      />
      {churn.revenue.map((r) => (
        <Stat key={r.currency} label={`${r.currency} revenue churn`} value={fmtPct(r.churnRate)} hint={<>{fmtMoney(r.mrrLost.amountMinor, r.currency)} of {fmtMoney(r.mrrAtStart.amountMinor, r.currency)} MRR lost</>} />
      ))}
    </>
  );
}

const compactNum = (v: number) => new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 }).format(v);

/**
 * One currency at a time (money is never summed across currencies). Bars stack: new under expansion above zero,
 * contraction above churn below it; the table gives each movement's own amount.
 */
function MovementChart({ currencies }: { currencies: Movement["currencies"] }) {
  const [cur, setCur] = useState(currencies.find((c) => c.currency === "USD")?.currency ?? currencies[0]!.currency);
  const c = currencies.find((x) => x.currency === cur) ?? currencies[0]!;
  const col = (k: "new" | "expansion" | "contraction" | "churn" | "net") => c.movement.map((m) => m[k].amountMinor);
  const [n, e, k, ch] = [col("new"), col("expansion"), col("contraction"), col("churn")];
  const axis = (v: number) => {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: c.currency, notation: "compact", maximumFractionDigits: 1 }).format(v / 10 ** exponentOf(c.currency));
    } catch {
      return compactNum(v);
    }
  };
  return (
    <>
      {currencies.length > 1 ? (
        <label class="field inline currency-pick">
          <span>Currency</span>
          <select value={cur} onChange={(ev) => setCur((ev.target as HTMLSelectElement).value)}>
            {currencies.map((x) => (
              <option key={x.currency} value={x.currency}>
                {x.currency}
              </option>
            ))}
          </select>
        </label>
      ) : null}
      <Chart
        key={c.currency}
        name={`mrr-movement-${c.currency}`}
        title={`${c.currency}: new, expansion, contraction and churn per month`}
        x={c.movement.map((_, i) => i)}
        xLabels={c.movement.map((m) => monthLabel(m.month))}
        format={(v) => fmtMoney(Math.round(v), c.currency)}
        axisFormat={axis}
        series={[
          { label: "Expansion", values: n.map((v, i) => v + e[i]!), raw: e, color: COLORS.expansion, kind: "bars" },
          { label: "New", values: n, color: COLORS.new, kind: "bars" },
          { label: "Churn", values: ch.map((v, i) => -(v + k[i]!)), raw: ch.map((v) => -v), color: COLORS.churn, kind: "bars" },
          { label: "Contraction", values: k.map((v) => -v), color: COLORS.contraction, kind: "bars" },
          { label: "Net", values: col("net"), color: COLORS.net },
        ]}
      />
    </>
  );
}

const MODE_TEXT = { normal: "Payments flow normally", frozen: "Payments frozen: nothing reaches a gateway", queue: "Queue mode: charges are parked until resume" };

export function PaymentModeCard({ session }: { session: Session }) {
  const status = useAsync(() => call(api.GET("/admin/emergency/status")), []);
  const [dialog, setDialog] = useState<null | "freeze" | "queue" | "resume">(null);
  const admin = can.admin(session.role);
  const mode = status.data?.mode;
  const act = async (reason: string) => {
    if (dialog === "freeze") await call(api.POST("/admin/emergency/freeze-payments", { body: { reason } }));
    else if (dialog === "queue") await call(api.POST("/admin/emergency/queue-mode", { body: { reason } }));
    else await call(api.POST("/admin/emergency/resume-payments", { body: { reason } }));
    status.reload();
  };
  return (
    <section class={`mode-banner mode-${mode ?? "unknown"}`} aria-label="Payment mode" data-testid="payment-mode">
      <div>
        <div class="mode-title">
          Payment mode <Badge status={mode ?? "…"} />
        </div>
        <div class="muted">
          {mode ? MODE_TEXT[mode] : "…"}
          {status.data?.reason && mode !== "normal" ? ` — “${status.data.reason}” by ${status.data.actor ?? "?"} since ${fmtDate(status.data.since)}` : ""}
        </div>
        <ProblemBox error={status.error} />
      </div>
      {admin ? (
        <div class="mode-actions">
          {mode !== "frozen" ? (
            <button type="button" class="danger" onClick={() => setDialog("freeze")}>
              Freeze payments
            </button>
          ) : null}
          {mode === "normal" ? (
            <button type="button" onClick={() => setDialog("queue")}>
              Queue mode
            </button>
          ) : null}
          {mode && mode !== "normal" ? (
            <button type="button" class="primary" onClick={() => setDialog("resume")}>
              Resume payments
            </button>
          ) : null}
        </div>
      ) : (
        <span class="muted small">Only admins can change the payment mode.</span>
      )}
      <ConfirmDialog
        open={dialog !== null}
        title={dialog === "freeze" ? "Freeze all payments" : dialog === "queue" ? "Switch to queue mode" : "Resume payments"}
        confirmLabel={dialog === "freeze" ? "Freeze payments" : dialog === "queue" ? "Queue payments" : "Resume payments"}
        confirmWord={dialog === "freeze" ? "FREEZE" : dialog === "queue" ? "QUEUE" : "RESUME"}
        reason
        danger={dialog !== "resume"}
        onConfirm={act}
        onClose={() => setDialog(null)}
      >
        <p>
          {dialog === "freeze"
            ? "No charge or refund will reach a gateway until payments are resumed. Queued charges wait; direct calls are refused with 423."
            : dialog === "queue"
              ? "Charges are accepted and parked, then released in order when payments resume."
              : "Charges reach the gateways again; parked charges are released in order."}
        </p>
      </ConfirmDialog>
    </section>
  );
}

