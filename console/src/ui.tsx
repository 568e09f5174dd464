import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiProblem, type Page } from "./api";
import { fmtMoney } from "./format";

/** Loads with `fn` whenever `deps` change; `reload` runs it again. Errors keep the API's problem. */
export function useAsync<T>(fn: () => Promise<T>, deps: unknown[]): { data: T | undefined; error: ApiProblem | undefined; loading: boolean; reload: () => void } {
  const [state, setState] = useState<{ data?: T; error?: ApiProblem; loading: boolean }>({ loading: true });
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    fn().then(
      (data) => live && setState({ data, loading: false }),
      (e) => live && setState({ error: e instanceof ApiProblem ? e : new ApiProblem({ status: 0, detail: String(e) }), loading: false }),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, n]);
  return { data: state.data, error: state.error, loading: state.loading, reload: useCallback(() => setN((x) => x + 1), []) };
}

/** A refusal as the API explained it: its detail, the field errors, and the request id to quote. */
export function ProblemBox({ error }: { error: ApiProblem | undefined | null }) {
  if (!error) return null;
  const p = error.problem;
  return (
    <div class="problem" role="alert">
      <strong>{p.status ? `${p.status} ${p.title ?? ""}` : (p.title ?? "Error")}</strong>
      <div class="problem-detail">{p.detail}</div>
      {p.errors?.length ? (
        <ul>
          {p.errors.map((e) => (
            <li key={e.path}>
              <code>{e.path}</code> {e.message}
            </li>
          ))}
        </ul>
      ) : null}
      {p.requestId ? <small>request {p.requestId}</small> : null}
    </div>
  );
}

export function Money({ minor, currency }: { minor: number; currency: string }) {
  return <span class={`money${minor < 0 ? " neg" : ""}`}>{fmtMoney(minor, currency)}</span>;
}

export function Badge({ status }: { status: string | null | undefined }) {
  return <span class={`badge badge-${status ?? "none"}`}>{status ?? "—"}</span>;
}

export function Card({ title, children, actions, class: cls }: { title?: string; children: ComponentChildren; actions?: ComponentChildren; class?: string }) {
  return (
    <section class={`card ${cls ?? ""}`} aria-label={title}>
      {title || actions ? (
        <header class="card-head">
          {title ? <h2>{title}</h2> : <span />}
          {actions ? <div class="card-actions">{actions}</div> : null}
        </header>
      ) : null}
      {children}
    </section>
  );
}

export function Stat({ label, value, hint, testid }: { label: string; value: ComponentChildren; hint?: ComponentChildren; testid?: string }) {
  return (
    <div class="stat" data-testid={testid}>
      <div class="stat-label">{label}</div>
      <div class="stat-value">{value}</div>
      {hint ? <div class="stat-hint">{hint}</div> : null}
    </div>
  );
}

export function Loading({ what }: { what?: string }) {
  return (
    <p class="muted" aria-busy="true">
      Loading{what ? ` ${what}` : ""}…
    </p>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="muted empty">{children}</p>;
}

export type Column<T> = { label: string; cell: (row: T) => ComponentChildren; class?: string };

/** What a list route takes besides its filters: the page size and the cursor. */
export type PageParams = { limit: number; startingAfter?: string };

/**
 * One page of a list at a time, with the API's cursors: "Next" sends `startingAfter=nextCursor`, "Previous" goes
 * back to the cursor that opened the page before. `load` makes the typed call; a change of `filters` (the values its
 * query depends on) starts again at the first page.
 */
export function PagedTable<T extends { id: string }>({
  load,
  filters = [],
  columns,
  pageSize = 20,
  label,
  empty = "Nothing here yet.",
  reloadKey,
}: {
  load: (page: PageParams) => Promise<Page<T>>;
  filters?: unknown[];
  columns: Column<T>[];
  pageSize?: number;
  label: string;
  empty?: string;
  reloadKey?: unknown;
}) {
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const qkey = JSON.stringify(filters);
  useEffect(() => setCursors([undefined]), [qkey]);
  const cursor = cursors[cursors.length - 1];
  const page = useAsync(() => load(cursor ? { limit: pageSize, startingAfter: cursor } : { limit: pageSize }), [qkey, cursor, reloadKey]);
  return (
    <div class="paged">
      <ProblemBox error={page.error} />
      {page.data && page.data.data.length === 0 ? <Empty>{empty}</Empty> : null}
      {page.data && page.data.data.length > 0 ? <Table label={label} rows={page.data.data} columns={columns} /> : null}
      {page.loading && !page.data ? <Loading /> : null}
      <nav class="pager" aria-label={`${label} pages`}>
        <button type="button" disabled={cursors.length <= 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
          ← Previous
        </button>
        <span class="muted">Page {cursors.length}</span>
        <button type="button" disabled={!page.data?.hasMore} onClick={() => page.data?.nextCursor && setCursors((c) => [...c, page.data!.nextCursor!])}>
          Next →
        </button>
      </nav>
    </div>
  );
}

export function Table<T extends { id?: string }>({ rows, columns, label }: { rows: T[]; columns: Column<T>[]; label: string }) {
  return (
    <div class="table-wrap">
      <table aria-label={label}>
        <thead>
          <tr>
            {columns.map((c) => (
              <th scope="col" class={c.class} key={c.label}>
                {c.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={r.id ?? i}>
              {columns.map((c) => (
                <td class={c.class} data-label={c.label} key={c.label}>
                  {c.cell(r)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/**
 * A modal that asks before acting. With `confirmWord`, the operator must type it (emergency actions); with
 * `reason`, a reason is required and passed on. The API's refusal is shown in the dialog, which stays open.
 */
export function ConfirmDialog({
  open,
  title,
  children,
  confirmLabel,
  confirmWord,
  reason,
  danger,
  ready: allowed = true,
  onConfirm,
  onClose,
}: {
  open: boolean;
  title: string;
  children?: ComponentChildren;
  confirmLabel: string;
  confirmWord?: string;
  reason?: boolean;
  danger?: boolean;
  /** False keeps the confirm button disabled (e.g. until a preview was read). */
  ready?: boolean;
  onConfirm: (reason: string) => Promise<void>;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [typed, setTyped] = useState("");
  const [why, setWhy] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiProblem | null>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) {
      setTyped("");
      setWhy("");
      setError(null);
      d.showModal();
    } else if (!open && d.open) d.close();
  }, [open]);
  const ready = allowed && (!confirmWord || typed === confirmWord) && (!reason || why.trim().length > 0) && !busy;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!ready) return;
    setBusy(true);
    setError(null);
    try {
      await onConfirm(why.trim());
      onClose();
    } catch (err) {
      setError(err instanceof ApiProblem ? err : new ApiProblem({ status: 0, detail: String(err) }));
    } finally {
      setBusy(false);
    }
  };
  return (
    <dialog ref={ref} class="dialog" aria-labelledby="dialog-title" onClose={onClose} onCancel={onClose}>
      <form method="dialog" onSubmit={submit}>
        <h2 id="dialog-title">{title}</h2>
        {children}
        {reason ? (
          <label class="field">
            <span>Reason (recorded in the audit log)</span>
            <input name="reason" value={why} onInput={(e) => setWhy((e.target as HTMLInputElement).value)} required autoComplete="off" />
          </label>
        ) : null}
        {confirmWord ? (
          <label class="field">
            <span>
              Type <code>{confirmWord}</code> to confirm
            </span>
            <input name="confirm" value={typed} onInput={(e) => setTyped((e.target as HTMLInputElement).value)} autoComplete="off" spellcheck={false} />
          </label>
        ) : null}
        <ProblemBox error={error} />
        <div class="dialog-actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class={danger ? "danger" : "primary"} disabled={!ready}>
            {busy ? "Working…" : confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  );
}

/** A button that runs an API call and shows its refusal next to it. */
export function ActionButton({ label, run, disabled, class: cls, title }: { label: string; run: () => Promise<unknown>; disabled?: boolean; class?: string; title?: string }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiProblem | null>(null);
  return (
    <span class="action">
      <button
        type="button"
        class={cls}
        title={title}
        disabled={disabled || busy}
        onClick={async () => {
          setBusy(true);
          setError(null);
          try {
            await run();
          } catch (e) {
            setError(e instanceof ApiProblem ? e : new ApiProblem({ status: 0, detail: String(e) }));
          } finally {
            setBusy(false);
          }
        }}
      >
        {busy ? "Working…" : label}
      </button>
      <ProblemBox error={error} />
    </span>
  );
}

export function DL({ items }: { items: [string, ComponentChildren][] }) {
  return (
    <dl class="dl">
      {items.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}
