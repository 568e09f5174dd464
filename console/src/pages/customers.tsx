import { useState } from "preact/hooks";
import { ApiProblem, get, type Page } from "../api";
import { fmtDate } from "../format";
import { navigate } from "../router";
import { Badge, Card, DL, Loading, Money, PagedTable, ProblemBox, useAsync } from "../ui";
import { invoiceColumns, type Invoice } from "./invoices";
import { paymentColumns, type Payment } from "./payments";
import { subscriptionColumns, type Subscription } from "./subscriptions";

export type Customer = {
  id: string;
  email: string;
  name: string | null;
  currency: string;
  country: string | null;
  region: string | null;
  taxExempt: boolean;
  creditBalance: { amount: string; amountMinor: number };
  testClockId: string | null;
  metadata: Record<string, string>;
  createdAt: string;
};
type TimelineEvent = { id: string; type: string; createdAt: string; data: { object?: { id?: string } } };

export function Customers() {
  const [q, setQ] = useState("");
  const [query, setQuery] = useState<Record<string, string | undefined>>({});
  const [error, setError] = useState<ApiProblem | null>(null);
  const search = async (e: SubmitEvent) => {
    e.preventDefault();
    setError(null);
    const term = q.trim();
    if (/^cus_/.test(term)) {
      // An id opens the customer directly.
      try {
        await get<Customer>("/api/v1/customers/{id}", { path: { id: term } });
        navigate(`/customers/${encodeURIComponent(term)}`);
      } catch (err) {
        setError(err as ApiProblem);
      }
      return;
    }
    setQuery(term.includes("@") ? { email: term } : term ? { name: term } : {});
  };
  return (
    <div class="page">
      <div class="page-head">
        <h1>Customers</h1>
      </div>
      <Card>
        <form class="filters" role="search" onSubmit={search}>
          <label class="field grow">
            <span>Search by id (cus_…), email or name</span>
            <input type="search" name="q" value={q} onInput={(e) => setQ((e.target as HTMLInputElement).value)} placeholder="cus_123, ada@example.com or Ada" />
          </label>
          <button type="submit" class="primary">
            Search
          </button>
        </form>
        <ProblemBox error={error} />
        <PagedTable<Customer>
          label="Customers"
          path="/api/v1/customers"
          query={query}
          empty="No customer matches."
          columns={[
            { label: "Customer", cell: (c) => <a href={`/console/customers/${c.id}`}>{c.name ?? c.email}</a> },
            { label: "Email", cell: (c) => c.email },
            { label: "Id", cell: (c) => <code>{c.id}</code> },
            { label: "Currency", cell: (c) => c.currency },
            { label: "Credit", class: "num", cell: (c) => <Money minor={c.creditBalance.amountMinor} currency={c.currency} /> },
            { label: "Created", cell: (c) => fmtDate(c.createdAt) },
          ]}
        />
      </Card>
    </div>
  );
}

export function CustomerDetail({ id }: { id: string }) {
  const customer = useAsync(() => get<Customer>("/api/v1/customers/{id}", { path: { id } }), [id]);
  const c = customer.data;
  return (
    <div class="page">
      <div class="page-head">
        <h1>{c ? (c.name ?? c.email) : id}</h1>
        <a href="/console/customers">← Customers</a>
      </div>
      <ProblemBox error={customer.error} />
      {customer.loading && !c ? <Loading /> : null}
      {c ? (
        <>
          <Card title="Customer">
            <DL
              items={[
                ["Id", <code>{c.id}</code>],
                ["Email", c.email],
                ["Currency", c.currency],
                ["Country / region", `${c.country ?? "—"} / ${c.region ?? "—"}`],
                ["Tax exempt", c.taxExempt ? "yes" : "no"],
                ["Credit balance", <Money minor={c.creditBalance.amountMinor} currency={c.currency} />],
                ["Test clock", c.testClockId ?? "—"],
                ["Created", fmtDate(c.createdAt)],
              ]}
            />
          </Card>
          <Card title="Subscriptions">
            <PagedTable<Subscription> label="Subscriptions" path="/api/v1/subscriptions" query={{ customerId: id }} pageSize={10} columns={subscriptionColumns.filter((x) => x.label !== "Customer")} />
          </Card>
          <Card title="Invoices">
            <PagedTable<Invoice> label="Invoices" path="/api/v1/invoices" query={{ customerId: id }} pageSize={10} columns={invoiceColumns.filter((x) => x.label !== "Customer")} />
          </Card>
          <Card title="Payments">
            <PagedTable<Payment> label="Payments" path="/api/v1/payments" query={{ customerId: id }} pageSize={10} columns={paymentColumns.filter((x) => x.label !== "Customer")} />
          </Card>
          <Card title="Events timeline">
            <Timeline customerId={id} />
          </Card>
        </>
      ) : null}
    </div>
  );
}

/** The customer's events: those about the customer itself and about its subscriptions, invoices and payments. */
function Timeline({ customerId }: { customerId: string }) {
  const events = useAsync(() => get<Page<TimelineEvent>>("/api/v1/events", { query: { customerId, limit: 50 } }), [customerId]);
  return (
    <>
      <ProblemBox error={events.error} />
      {events.data ? (
        events.data.data.length ? (
          <ol class="timeline" aria-label="Events, newest first">
            {events.data.data.map((e) => (
              <li key={e.id}>
                <time dateTime={e.createdAt}>{fmtDate(e.createdAt)}</time>
                <Badge status={e.type.split(".").slice(-1)[0]} /> <strong>{e.type}</strong> <ObjectLink id={e.data.object?.id ?? ""} />
              </li>
            ))}
          </ol>
        ) : (
          <p class="muted">No events yet.</p>
        )
      ) : null}
    </>
  );
}

const PAGES: [string, string][] = [
  ["cus_", "customers"],
  ["sub_", "subscriptions"],
  ["inv_", "invoices"],
  ["pay_", "payments"],
];

/** An object id, linked to its page when the console has one. */
function ObjectLink({ id }: { id: string }) {
  const page = PAGES.find(([prefix]) => id.startsWith(prefix))?.[1];
  return page ? (
    <a href={`/console/${page}/${encodeURIComponent(id)}`}>
      <code>{id}</code>
    </a>
  ) : (
    <code class="muted">{id}</code>
  );
}
