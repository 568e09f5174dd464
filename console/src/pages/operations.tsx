import { useState } from "preact/hooks";
import { api, ApiProblem, call, type Answer, type Schema } from "../api";
import { can, type Session } from "../auth";
import { fmtDate, fmtPct } from "../format";
import { ActionButton, Badge, Card, ConfirmDialog, DL, Empty, PagedTable, ProblemBox, Table, useAsync } from "../ui";

type Verify = Answer<"/api/v1/audit/verify-integrity">;
type AuditEntry = Schema["AuditEntry"];
type Endpoint = Schema["WebhookEndpoint"];
type Delivery = Schema["WebhookDelivery"];
type Clock = Schema["TestClock"];

const SECTIONS = [
  ["gateways", "Gateways"],
  ["flags", "Feature flags"],
  ["config", "Config"],
  ["audit", "Audit"],
  ["webhooks", "Webhooks"],
  ["clocks", "Test clocks"],
] as const;
type Section = (typeof SECTIONS)[number][0];

export function Operations({ session }: { session: Session }) {
  const [tab, setTab] = useState<Section>("gateways");
  return (
    <div class="page">
      <div class="page-head">
        <h1>Operations</h1>
      </div>
      <div class="tabs" role="tablist" aria-label="Operations">
        {SECTIONS.map(([k, label]) => (
          <button key={k} type="button" role="tab" aria-selected={tab === k} onClick={() => setTab(k)}>
            {label}
          </button>
        ))}
      </div>
      {tab === "gateways" ? <Gateways session={session} /> : null}
      {tab === "flags" ? <Flags session={session} /> : null}
      {tab === "config" ? <ConfigView /> : null}
      {tab === "audit" ? <Audit /> : null}
      {tab === "webhooks" ? <Webhooks /> : null}
      {tab === "clocks" ? <Clocks session={session} /> : null}
    </div>
  );
}

function Gateways({ session }: { session: Session }) {
  const st = useAsync(() => call(api.GET("/api/v1/gateways/status")), []);
  const m = useAsync(() => call(api.GET("/api/v1/gateways/metrics", { params: { query: { window: "24h" } } })), []);
  const [dialog, setDialog] = useState<null | "failover" | "restore">(null);
  const r = st.data?.routing;
  return (
    <>
      <Card
        title="Gateways"
        actions={
          can.admin(session.role) && r ? (
            r.primaryDown ? (
              <button type="button" class="primary" onClick={() => setDialog("restore")}>
                Restore {r.primary}
              </button>
            ) : r.backup ? (
              <button type="button" class="danger" onClick={() => setDialog("failover")}>
                Fail over to {r.backup}
              </button>
            ) : null
          ) : null
        }
      >
        <ProblemBox error={st.error} />
        {st.data ? (
          <>
            <p>
              Overall <Badge status={st.data.status} /> · new charges go to <strong>{r!.activeGateway}</strong>
              {r!.primaryDown ? ` (primary ${r!.primary} marked down since ${fmtDate(r!.downSince)}: ${r!.downReason ?? ""})` : ""}
            </p>
            <Table
              label="Gateways"
              rows={st.data.gateways.map((g) => ({ ...g, id: g.name }))}
              columns={[
                { label: "Gateway", cell: (g) => <strong>{g.name}</strong> },
                { label: "Role", cell: (g) => g.role },
                { label: "Mode", cell: (g) => g.mode },
                { label: "Status", cell: (g) => <Badge status={g.markedDown ? "marked_down" : g.status} /> },
                { label: "Receiving charges", cell: (g) => (g.receivingCharges ? "yes" : "no") },
                { label: "Latency", class: "num", cell: (g) => `${Math.round(g.latencyMs)} ms` },
                { label: "Success (24 h)", class: "num", cell: (g) => fmtPct(m.data?.gateways.find((x) => x.gateway === g.name)?.successRate) },
                { label: "Detail", cell: (g) => <span class="small">{g.error ?? g.detail ?? ""}</span> },
              ]}
            />
          </>
        ) : null}
      </Card>
      <ConfirmDialog
        open={dialog !== null}
        title={dialog === "failover" ? "Fail over to the backup gateway" : "Restore the primary gateway"}
        confirmLabel={dialog === "failover" ? "Fail over" : "Restore"}
        confirmWord={dialog === "failover" ? "FAILOVER" : undefined}
        reason
        danger={dialog === "failover"}
        onConfirm={async (reason) => {
          if (dialog === "failover") await call(api.POST("/admin/gateways/failover", { body: { primary: r!.primary, backup: r!.backup ?? "", reason } }));
          else await call(api.POST("/admin/gateways/restore", { body: { reason } }));
          st.reload();
        }}
        onClose={() => setDialog(null)}
      />
    </>
  );
}

function Flags({ session }: { session: Session }) {
  const flags = useAsync(() => call(api.GET("/admin/features")), []);
  const admin = can.admin(session.role);
  const [edit, setEdit] = useState<{ name: string; enabled: boolean; percentage: string } | null>(null);
  const [error, setError] = useState<ApiProblem | null>(null);
  const save = async (e: Event) => {
    e.preventDefault();
    if (!edit) return;
    setError(null);
    try {
      const pct = edit.percentage.trim() === "" ? undefined : Number(edit.percentage);
      await call(api.PUT("/admin/features/{name}", { params: { path: { name: edit.name } }, body: { enabled: edit.enabled, ...(pct === undefined ? {} : { percentage: pct }) } }));
      setEdit(null);
      flags.reload();
    } catch (err) {
      setError(err as ApiProblem);
    }
  };
  return (
    <Card title="Feature flags" actions={admin ? <button type="button" onClick={() => setEdit({ name: "", enabled: true, percentage: "100" })}>New flag</button> : null}>
      <ProblemBox error={flags.error} />
      {flags.data ? (
        flags.data.data.length ? (
          <Table
            label="Feature flags"
            rows={flags.data.data.map((f) => ({ ...f, id: f.name }))}
            columns={[
              { label: "Flag", cell: (f) => <code>{f.name}</code> },
              { label: "Enabled", cell: (f) => <Badge status={f.invalid ? "invalid" : f.enabled ? "on" : "off"} /> },
              {
                label: "Rollout",
                cell: (f) => (
                  <span class="rollout">
                    <meter min={0} max={100} value={f.percentage ?? 100} aria-label={`${f.name} rollout`} /> {f.percentage ?? 100} %
                  </span>
                ),
              },
              { label: "Criteria", cell: (f) => <span class="small">{Object.entries(f.criteria).map(([k, v]) => `${k}=${v}`).join(", ") || "everyone"}</span> },
              { label: "Updated", cell: (f) => `${fmtDate(f.updatedAt)} by ${f.updatedBy}` },
              { label: "", cell: (f) => (admin ? <button type="button" onClick={() => setEdit({ name: f.name, enabled: f.enabled, percentage: f.percentage === null ? "" : String(f.percentage) })}>Edit</button> : null) },
            ]}
          />
        ) : (
          <Empty>No feature flags.</Empty>
        )
      ) : null}
      {edit ? (
        <form class="filters" onSubmit={save} aria-label="Edit feature flag">
          <label class="field">
            <span>Name</span>
            <input value={edit.name} onInput={(e) => setEdit({ ...edit, name: (e.target as HTMLInputElement).value })} required pattern="[a-z0-9]+(-[a-z0-9]+)*" />
          </label>
          <label class="check">
            <input type="checkbox" checked={edit.enabled} onChange={(e) => setEdit({ ...edit, enabled: (e.target as HTMLInputElement).checked })} /> Enabled
          </label>
          <label class="field">
            <span>Rollout % (0–100)</span>
            <input type="number" min={0} max={100} value={edit.percentage} onInput={(e) => setEdit({ ...edit, percentage: (e.target as HTMLInputElement).value })} />
          </label>
          <button type="submit" class="primary">
            Save
          </button>
          <button type="button" onClick={() => setEdit(null)}>
            Cancel
          </button>
        </form>
      ) : null}
      <ProblemBox error={error} />
    </Card>
  );
}

function ConfigView() {
  const cfg = useAsync(() => call(api.GET("/admin/config")), []);
  const c = cfg.data;
  return (
    <Card title="Configuration (secrets are never shown)">
      <ProblemBox error={cfg.error} />
      {c ? (
        <div class="grid two">
          <div>
            <h3>Environment</h3>
            <DL items={Object.entries(c.environment).map(([k, v]) => [k, v ?? "—"])} />
            <h3>Billing</h3>
            <DL items={Object.entries(c.billing).map(([k, v]) => [k, String(v)])} />
          </div>
          <div>
            <h3>Secrets</h3>
            <DL items={Object.entries(c.secrets).map(([k, v]) => [k, <span class={v === "configured" ? "ok" : "muted"}>{v === "configured" ? "•••••• configured" : "not configured"}</span>])} />
            <h3>Stored settings</h3>
            <DL items={c.settings.map((s) => [s.key, `${fmtDate(s.updatedAt)} by ${s.updatedBy}`])} />
          </div>
        </div>
      ) : null}
    </Card>
  );
}

function Audit() {
  const [f, setF] = useState({ action: "", target: "", user: "" });
  const [query, setQuery] = useState<{ action?: string; target?: string; user?: string }>({});
  const [verify, setVerify] = useState<Verify | null>(null);
  return (
    <>
      <Card title="Audit chain" actions={<ActionButton label="Verify integrity" run={async () => setVerify(await call(api.GET("/api/v1/audit/verify-integrity")))} />}>
        {verify ? (
          <p role="status" class={verify.ok ? "ok" : "problem"}>
            {verify.ok ? `Chain intact: ${verify.checked} rows verified against the anchor.` : `Chain broken at row ${verify.brokenAt}: ${verify.reason}`}
          </p>
        ) : (
          <p class="muted">Checks every row's keyed hash and the head kept outside D1.</p>
        )}
      </Card>
      <Card title="Audit search">
        <form
          class="filters"
          role="search"
          onSubmit={(e) => {
            e.preventDefault();
            setQuery({ action: f.action || undefined, target: f.target || undefined, user: f.user || undefined });
          }}
        >
          <label class="field">
            <span>Action</span>
            <input value={f.action} onInput={(e) => setF({ ...f, action: (e.target as HTMLInputElement).value.trim() })} placeholder="payment.processed" />
          </label>
          <label class="field">
            <span>Target id</span>
            <input value={f.target} onInput={(e) => setF({ ...f, target: (e.target as HTMLInputElement).value.trim() })} placeholder="sub_…" />
          </label>
          <label class="field">
            <span>User</span>
            <input value={f.user} onInput={(e) => setF({ ...f, user: (e.target as HTMLInputElement).value.trim() })} placeholder="local-admin" />
          </label>
          <button type="submit" class="primary">
            Search
          </button>
        </form>
        <PagedTable<AuditEntry>
          label="Audit entries"
          load={(page) => call(api.GET("/api/v1/audit/search", { params: { query: { ...query, ...page } } }))}
          filters={[query]}
          columns={[
            { label: "#", class: "num", cell: (a) => a.seq },
            { label: "At", cell: (a) => fmtDate(a.at) },
            { label: "Actor", cell: (a) => `${a.actor} (${a.actorRole})` },
            { label: "Action", cell: (a) => <code>{a.action}</code> },
            { label: "Target", cell: (a) => <code>{a.targetId}</code> },
            { label: "Reason", cell: (a) => a.reason ?? "" },
          ]}
        />
      </Card>
    </>
  );
}

function Webhooks() {
  const [selected, setSelected] = useState<string | null>(null);
  return (
    <>
      <Card title="Webhook endpoints">
        <PagedTable<Endpoint>
          label="Webhook endpoints"
          load={(page) => call(api.GET("/api/v1/webhook-endpoints", { params: { query: page } }))}
          empty="No webhook endpoints. Create one with POST /api/v1/webhook-endpoints."
          columns={[
            { label: "Endpoint", cell: (e) => <button type="button" class="link" onClick={() => setSelected(e.id)}>{e.url}</button> },
            { label: "Events", cell: (e) => <span class="small">{e.enabledEvents.join(", ")}</span> },
            { label: "State", cell: (e) => <Badge status={e.disabled ? "disabled" : "enabled"} /> },
            { label: "Created", cell: (e) => fmtDate(e.createdAt) },
          ]}
        />
      </Card>
      {selected ? (
        <Card title={`Deliveries of ${selected}`}>
          <PagedTable<Delivery>
            label="Deliveries"
            load={(page) => call(api.GET("/api/v1/webhook-endpoints/{id}/deliveries", { params: { path: { id: selected }, query: page } }))}
            filters={[selected]}
            columns={[
              { label: "Event", cell: (d) => <><code>{d.eventId}</code> <span class="small">{d.eventType}</span></> },
              { label: "Status", cell: (d) => <Badge status={d.status} /> },
              { label: "Attempts", class: "num", cell: (d) => d.attemptCount },
              { label: "Last answer", cell: (d) => (d.lastStatusCode ? `HTTP ${d.lastStatusCode}` : (d.lastError ?? "—")) },
              { label: "Next attempt", cell: (d) => fmtDate(d.nextAttemptAt) },
            ]}
          />
        </Card>
      ) : null}
    </>
  );
}

/** Every test clock of the environment (GET /api/v1/test-clocks), newest first: created here, by a script or by a colleague. */
function Clocks({ session }: { session: Session }) {
  const [name, setName] = useState("");
  const [time, setTime] = useState("2024-01-01T00:00");
  const [error, setError] = useState<ApiProblem | null>(null);
  const [created, setCreated] = useState(0);
  const operate = can.operateSubscriptions(session.role);
  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await call(api.POST("/api/v1/test-clocks", { body: { frozenTime: `${time}:00Z`, ...(name ? { name } : {}) } }));
      setName("");
      setCreated((n) => n + 1);
    } catch (err) {
      setError(err as ApiProblem);
    }
  };
  return (
    <Card title="Test clocks (not in production)">
      <p class="muted small">Customers and subscriptions attached to a test clock live in its simulated time; advancing it runs their renewals. Production refuses test clocks.</p>
      {operate ? (
        <form class="filters" onSubmit={create} aria-label="Create test clock">
          <label class="field">
            <span>Name</span>
            <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} placeholder="renewal rehearsal" />
          </label>
          <label class="field">
            <span>Frozen at (UTC)</span>
            <input type="datetime-local" value={time} onInput={(e) => setTime((e.target as HTMLInputElement).value)} required />
          </label>
          <button type="submit" class="primary">
            Create clock
          </button>
        </form>
      ) : null}
      <ProblemBox error={error} />
      <PagedTable<Clock>
        label="Test clocks"
        load={(page) => call(api.GET("/api/v1/test-clocks", { params: { query: page } }))}
        reloadKey={created}
        empty="No test clocks yet."
        columns={[
          { label: "Clock", cell: (c) => (<><strong>{c.name ?? "unnamed"}</strong> <code class="small">{c.id}</code></>) },
          { label: "Status", cell: (c) => <Badge status={c.status} /> },
          { label: "Frozen at", cell: (c) => <span data-testid={`clock-time-${c.id}`}>{fmtDate(c.frozenTime)}</span> },
          { label: "Created", cell: (c) => fmtDate(c.createdAt) },
          ...(operate ? [{ label: "Advance", cell: (c: Clock) => <AdvanceClock clock={c} onDone={() => setCreated((n) => n + 1)} /> }] : []),
        ]}
      />
    </Card>
  );
}

function AdvanceClock({ clock, onDone }: { clock: Clock; onDone: () => void }) {
  const [to, setTo] = useState("");
  return (
    <div class="button-row">
      <label class="field inline">
        <span class="sr-only">Advance {clock.name ?? clock.id} to</span>
        <input type="datetime-local" value={to} onInput={(e) => setTo((e.target as HTMLInputElement).value)} />
      </label>
      <ActionButton label="Advance" disabled={!to} run={async () => (await call(api.POST("/api/v1/test-clocks/{id}/advance", { params: { path: { id: clock.id } }, body: { frozenTime: `${to}:00Z` } })), onDone())} />
    </div>
  );
}
