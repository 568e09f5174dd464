import { useState } from "preact/hooks";
import { api, ApiProblem, call, type Schema } from "../api";
import { fmtDate } from "../format";
import { navigate } from "../router";
import { Badge, Card, DL, Loading, Money, PagedTable, ProblemBox, useAsync } from "../ui";
import { invoiceColumns, type Invoice } from "./invoices";
import { paymentColumns, type Payment } from "./payments";
import { subscriptionColumns, type Subscription } from "./subscriptions";
import { CreditNotesOf } from "./credit-notes";

export type Customer = Schema["Customer"];
type TimelineEvent = Schema["Event"];

export function Customers() {
  const [q, setQ] = useState("");
  const [query, setQuery] = useState<{ email?: string; name?: string }>({});
  const [error, setError] = useState<ApiProblem | null>(null);
  const search = async (e: SubmitEvent) => {
    e.preventDefault();
    setError(null);
    const term = q.trim();
    if (/^cus_/.test(term)) {
      // An id opens the customer directly.
      try {
        await call(api.GET("/api/v1/customers/{id}", { params: { path: { id: term } } }));
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
          load={(page) => call(api.GET("/api/v1/customers", { params: { query: { ...query, ...page } } }))}
          filters={[query]}
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
  const customer = useAsync(() => call(api.GET("/api/v1/customers/{id}", { params: { path: { id } } })), [id]);
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
            <PagedTable<Subscription> label="Subscriptions" load={(page) => call(api.GET("/api/v1/subscriptions", { params: { query: { customerId: id, ...page } } }))} filters={[id]} pageSize={10} columns={subscriptionColumns.filter((x) => x.label !== "Customer")} />
          </Card>
          <Card title="Invoices">
            <PagedTable<Invoice> label="Invoices" load={(page) => call(api.GET("/api/v1/invoices", { params: { query: { customerId: id, ...page } } }))} filters={[id]} pageSize={10} columns={invoiceColumns.filter((x) => x.label !== "Customer")} />
          </Card>
          <Card title="Credit notes">
            <CreditNotesOf customerId={id} />
          </Card>
          <Card title="Payments">
            <PagedTable<Payment> label="Payments" load={(page) => call(api.GET("/api/v1/payments", { params: { query: { customerId: id, ...page } } }))} filters={[id]} pageSize={10} columns={paymentColumns.filter((x) => x.label !== "Customer")} />
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
  const events = useAsync(() => call(api.GET("/api/v1/events", { params: { query: { customerId, limit: 50 } } })), [customerId]);
  return (
    <>
      <ProblemBox error={events.error} />
      {events.data ? (
        events.data.data.length ? (
          <ol class="timeline" aria-label="Events, newest first">
            {events.data.data.map((e) => (
              <li key={e.id}>
                <time dateTime={e.createdAt}>{fmtDate(e.createdAt)}</time>
                <Badge status={e.type.split(".").slice(-1)[0]} /> <strong>{e.type}</strong> <ObjectLink id={objectId(e)} />
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

/** The id of the object an event carries (the contract leaves `data.object` open: it is whichever object changed). */
function objectId(e: TimelineEvent): string {
  const o = e.data.object;
  return o && typeof o === "object" && "id" in o && typeof o.id === "string" ? o.id : "";
}

const PAGES: [string, string][] = [
  ["cus_", "customers"],
  ["sub_", "subscriptions"],
  ["inv_", "invoices"],
  ["pay_", "payments"],
  ["cn_", "credit-notes"],
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
