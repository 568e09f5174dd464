import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, ApiProblem, call, setToken } from "./api";
import { decodeSession, restoreSession, type Session } from "./auth";
import { match, navigate, onLinkClick, useLocation } from "./router";
import { ProblemBox } from "./ui";
import { Overview } from "./pages/overview";
import { CustomerDetail, Customers } from "./pages/customers";
import { SubscriptionDetail, Subscriptions } from "./pages/subscriptions";
import { InvoiceDetail, Invoices } from "./pages/invoices";
import { PaymentDetail, Payments } from "./pages/payments";
import { Operations } from "./pages/operations";
import { CreditNoteDetail, CreditNotes } from "./pages/credit-notes";
import "./styles.css";

const NAV: [string, string][] = [
  ["/", "Overview"],
  ["/customers", "Customers"],
  ["/subscriptions", "Subscriptions"],
  ["/invoices", "Invoices"],
  ["/credit-notes", "Credit notes"],
  ["/payments", "Payments"],
  ["/operations", "Operations"],
];

type Theme = "system" | "light" | "dark";
function applyTheme(t: Theme) {
  if (t === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
}
applyTheme((localStorage.getItem("billing-console-theme") as Theme | null) ?? "system");

function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<ApiProblem | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const session = decodeSession(value);
    if (!session) {
      setError(new ApiProblem({ status: 0, title: "Not a token", detail: "Paste a JWT (three base64url parts) or an API key starting with bek_." }));
      return;
    }
    setBusy(true);
    setToken(session.token);
    try {
      // Any read the role may make proves the token; the API refuses a bad signature or an expired token with 401.
      await call(api.GET("/api/v1/customers", { params: { query: { limit: 1 } } })).catch((err: unknown) => {
        if (err instanceof ApiProblem && err.problem.status === 403) return;
        throw err;
      });
      onSignedIn(session);
    } catch (err) {
      setToken(null);
      setError(err instanceof ApiProblem ? err : new ApiProblem({ status: 0, detail: String(err) }));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form onSubmit={submit} class="card signin-card" aria-labelledby="signin-title">
        <div class="brand big" aria-hidden="true">
          <span class="logo">◆</span> Billing console
        </div>
        <h1 id="signin-title">Sign in</h1>
        <p class="muted">
          Paste a token from <code>npm run token -- &lt;role&gt;</code> or an API key with read scopes. It stays in this tab (sessionStorage) and is sent only to this API.
        </p>
        <label class="field">
          <span>Token or API key</span>
          <textarea name="token" rows={4} value={value} onInput={(e) => setValue((e.target as HTMLTextAreaElement).value)} autoComplete="off" spellcheck={false} required />
        </label>
        <ProblemBox error={error} />
        <button type="submit" class="primary" disabled={busy || !value.trim()}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

function Page({ path, session }: { path: string; session: Session }) {
  let m: Record<string, string> | null;
  if (path === "/") return <Overview session={session} />;
  if (path === "/customers") return <Customers />;
  if ((m = match("/customers/:id", path))) return <CustomerDetail id={m.id!} />;
  if (path === "/subscriptions") return <Subscriptions />;
  if ((m = match("/subscriptions/:id", path))) return <SubscriptionDetail id={m.id!} session={session} />;
  if (path === "/invoices") return <Invoices />;
  if ((m = match("/invoices/:id", path))) return <InvoiceDetail id={m.id!} session={session} />;
  if (path === "/credit-notes") return <CreditNotes />;
  if ((m = match("/credit-notes/:id", path))) return <CreditNoteDetail id={m.id!} session={session} />;
  if (path === "/payments") return <Payments session={session} />;
  if ((m = match("/payments/:id", path))) return <PaymentDetail id={m.id!} session={session} />;
  if (path === "/operations") return <Operations session={session} />;
  return (
    <div class="card">
      <h1>Not found</h1>
      <p>
        No page at <code>{path}</code>. <a href="/console">Back to the overview</a>
      </p>
    </div>
  );
}

function App() {
  const [session, setSession] = useState<Session | null>(restoreSession);
  const [theme, setTheme] = useState<Theme>((localStorage.getItem("billing-console-theme") as Theme | null) ?? "system");
  const [menu, setMenu] = useState(false);
  const { path } = useLocation();
  useEffect(() => {
    applyTheme(theme);
    localStorage.setItem("billing-console-theme", theme);
  }, [theme]);
  useEffect(() => setMenu(false), [path]);
  useEffect(() => {
    const title = NAV.find(([p]) => p !== "/" && path.startsWith(p))?.[1] ?? "Overview";
    document.title = `${title} · Billing console`;
  }, [path]);
  if (!session) return <SignIn onSignedIn={setSession} />;
  const signOut = () => {
    setToken(null);
    setSession(null);
    navigate("/", true);
  };
  const section = (p: string) => (p === "/" ? path === "/" : path === p || path.startsWith(p + "/"));
  return (
    <div class="shell" onClick={onLinkClick}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <a class="brand" href="/console">
          <span class="logo" aria-hidden="true">◆</span> Billing console
        </a>
        <button type="button" class="menu-toggle" aria-expanded={menu} aria-controls="nav" onClick={() => setMenu(!menu)}>
          Menu
        </button>
        <nav id="nav" class={menu ? "nav open" : "nav"} aria-label="Sections">
          {NAV.map(([p, label]) => (
            <a key={p} href={`/console${p === "/" ? "" : p}`} aria-current={section(p) ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <div class="who">
          <label class="theme">
            <span class="sr-only">Theme</span>
            <select value={theme} onChange={(e) => setTheme((e.target as HTMLSelectElement).value as Theme)}>
              <option value="system">System theme</option>
              <option value="light">Light</option>
              <option value="dark">Dark</option>
            </select>
          </label>
          <span class="role" data-testid="role" title={session.subject}>
            <span class={`badge role-${session.role}`}>{session.role === "api_key" ? "API key" : session.role}</span>
            <span class="subject">{session.subject}</span>
          </span>
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Page path={path} session={session} />
      </main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
// The e2e budget reads this: navigation start to the first render of the app.
requestAnimationFrame(() => performance.mark("console-rendered"));
