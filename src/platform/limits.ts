import { AsyncLocalStorage } from "node:async_hooks";
import { withEnv } from "cloudflare:workers";

/**
 * Cloudflare's per-invocation limits, counted locally. Local workerd enforces none of them, so a path that makes
 * 3,000 D1 queries in one request passes every test here and fails in production. With `LIMITS` set (wrangler.toml's
 * development vars and the tests set `enforce`; production leaves it empty), the entry points (src/index.ts) run each
 * invocation — an HTTP request, a queue batch, a cron trigger — against bindings that count what Cloudflare counts,
 * log one line with the counts, and fail loudly past a limit. Empty, the entry points call the handlers directly.
 *
 * Sources (November 2026): D1 "Queries per Worker invocation" 1,000 on Workers Paid (developers.cloudflare.com/d1/
 * platform/limits); Workers "Subrequests" 10,000 per request on Workers Paid (developers.cloudflare.com/workers/
 * platform/limits); Queues "Maximum messages per sendBatch call" 100 or 256 KB in total
 * (developers.cloudflare.com/queues/platform/limits). docs/scale.md explains what each path does with them.
 */
export const CLOUDFLARE_LIMITS = {
  d1Queries: 1000,
  subrequests: 10_000,
  sendBatchMessages: 100,
  sendBatchBytes: 256_000,
} as const;

export type InvocationCounts = { d1Queries: number; subrequests: number; queueSends: number };

/** `enforce`: count, log and throw past a limit; `count`: count and log only (benches measuring a path past them). */
export type LimitsMode = "enforce" | "count";

export function limitsMode(env: { LIMITS?: string }): LimitsMode | null {
  const v = env.LIMITS;
  return v === "enforce" || v === "count" ? v : null;
}

/** A limit crossed in one invocation: names the invocation and its counts. */
export class LimitExceeded extends Error {
  constructor(
    readonly invocation: string,
    readonly counts: InvocationCounts,
    readonly limit: string,
  ) {
    super(`Cloudflare limit exceeded in ${invocation}: ${limit} (d1Queries ${counts.d1Queries}, subrequests ${counts.subrequests}, queueSends ${counts.queueSends})`);
    this.name = "LimitExceeded";
  }
}

/** One invocation's counters. */
export class Invocation {
  readonly counts: InvocationCounts = { d1Queries: 0, subrequests: 0, queueSends: 0 };
  exceeded: LimitExceeded | null = null;
  constructor(
    readonly name: string,
    readonly mode: LimitsMode,
  ) {}

  d1(n: number) {
    this.counts.d1Queries += n;
    if (this.counts.d1Queries > CLOUDFLARE_LIMITS.d1Queries) this.fail(`more than ${CLOUDFLARE_LIMITS.d1Queries} D1 queries`);
  }

  subrequest(n = 1) {
    this.counts.subrequests += n;
    if (this.counts.subrequests > CLOUDFLARE_LIMITS.subrequests) this.fail(`more than ${CLOUDFLARE_LIMITS.subrequests} subrequests`);
  }

  queueSend(messages: number, bytes: number) {
    this.subrequest();
    this.counts.queueSends += messages;
    if (messages > CLOUDFLARE_LIMITS.sendBatchMessages) this.fail(`a sendBatch of ${messages} messages (at most ${CLOUDFLARE_LIMITS.sendBatchMessages})`);
    if (bytes > CLOUDFLARE_LIMITS.sendBatchBytes) this.fail(`a sendBatch of ${bytes} bytes (at most ${CLOUDFLARE_LIMITS.sendBatchBytes})`);
  }

  /** The first crossing is kept (so a caller that swallows the error still fails the invocation) and logged. */
  private fail(limit: string) {
    const err = new LimitExceeded(this.name, { ...this.counts }, limit);
    if (!this.exceeded) {
      this.exceeded = err;
      console.log(JSON.stringify({ level: "error", msg: "cloudflare limit exceeded", invocation: this.name, limit, ...this.counts }));
    }
    if (this.mode === "enforce") throw err;
  }
}

const current = new AsyncLocalStorage<Invocation>();

/** The counts of the invocation running now (null when limits are off): cron tasks log their share with it. */
export function currentCounts(): InvocationCounts | null {
  const inv = current.getStore();
  return inv ? { ...inv.counts } : null;
}

/**
 * Runs one invocation with counting bindings (a no-op wrapper when `LIMITS` is unset). Logs
 * `{"msg":"invocation","invocation":…,"d1Queries":…,"subrequests":…,"queueSends":…}` when it ends, and in `enforce`
 * mode throws the first limit crossed even when the code inside caught it.
 */
export async function withLimits<T>(env: Env, name: string, run: (env: Env) => Promise<T>, extra: Record<string, unknown> = {}): Promise<T> {
  const mode = limitsMode(env as { LIMITS?: string });
  if (!mode) return run(env);
  installFetchCounter();
  const inv = new Invocation(name, mode);
  const counted = countingEnv(env, inv);
  const started = Date.now();
  const log = (error?: unknown) =>
    console.log(
      JSON.stringify({
        level: inv.exceeded || error ? "error" : "info",
        msg: "invocation",
        invocation: name,
        ...extra,
        ...inv.counts,
        startedAt: started,
        ms: Date.now() - started,
        ...(inv.exceeded ? { limitExceeded: inv.exceeded.limit } : {}),
        ...(error ? { error: String(error) } : {}),
      }),
    );
  let result: T;
  try {
    result = (await current.run(inv, () => withEnv(counted, () => run(counted)))) as T;
  } catch (e) {
    log(e);
    throw inv.exceeded && inv.mode === "enforce" ? inv.exceeded : e;
  }
  log();
  // The work swallowed the crossing (a per-item try/catch, a queue retry): the invocation still fails.
  if (inv.exceeded && inv.mode === "enforce") throw inv.exceeded;
  return result;
}

// --- counting bindings ---

const isD1 = (b: object): b is D1Database => "prepare" in b && "batch" in b && "exec" in b;
const isQueue = (b: object): b is Queue => "send" in b && "sendBatch" in b;
const isDoNamespace = (b: object): b is DurableObjectNamespace => "idFromName" in b && "get" in b;
const isR2 = (b: object): b is R2Bucket => "head" in b && "put" in b && "list" in b && "createMultipartUpload" in b;
const isFetcher = (b: object): b is Fetcher => "fetch" in b && "connect" in b;

/** A view of `env` whose bindings count into `inv`; other values pass through. */
function countingEnv(env: Env, inv: Invocation): Env {
  const wrapped = new Map<PropertyKey, unknown>();
  // A copy: `env` may be the `cloudflare:workers` import, which inside withEnv() would resolve to this very view.
  return new Proxy({ ...env }, {
    get(target, key, receiver) {
      if (wrapped.has(key)) return wrapped.get(key);
      const value: unknown = Reflect.get(target, key, receiver);
      if (value === null || (typeof value !== "object" && typeof value !== "function")) return value;
      const b = value as object;
      // Fetchers first: a service binding (ASSETS) is an RPC stub on which any property name exists, so it would
      // also pass the D1 and queue checks and lose its fetch.
      const w = isFetcher(b) ? countingFetcher(b, inv) : isD1(b) ? countingD1(b, inv) : isQueue(b) ? countingQueue(b, inv) : isDoNamespace(b) ? countingNamespace(b, inv) : isR2(b) ? countingR2(b, inv) : value;
      wrapped.set(key, w);
      return w;
    },
  });
}

const statements = new WeakMap<object, D1PreparedStatement>();
const unwrap = (s: D1PreparedStatement) => statements.get(s) ?? s;

function countingStatement(real: D1PreparedStatement, inv: Invocation): D1PreparedStatement {
  const s = {
    bind: (...values: unknown[]) => countingStatement(real.bind(...values), inv),
    first: (col?: string) => (inv.d1(1), col === undefined ? real.first() : real.first(col)),
    run: () => (inv.d1(1), real.run()),
    all: () => (inv.d1(1), real.all()),
    raw: (opts?: { columnNames?: boolean }) => (inv.d1(1), real.raw(opts as { columnNames: true })),
  } as unknown as D1PreparedStatement;
  statements.set(s, real);
  return s;
}

function countingD1(db: D1Database, inv: Invocation): D1Database {
  const session = (s: D1DatabaseSession): D1DatabaseSession =>
    ({
      prepare: (q: string) => countingStatement(s.prepare(q), inv),
      batch: (stmts: D1PreparedStatement[]) => (inv.d1(stmts.length), s.batch(stmts.map(unwrap))),
      getBookmark: () => s.getBookmark(),
    }) as unknown as D1DatabaseSession;
  return {
    prepare: (q: string) => countingStatement(db.prepare(q), inv),
    // Each statement of a batch is a query to Cloudflare.
    batch: (stmts: D1PreparedStatement[]) => (inv.d1(stmts.length), db.batch(stmts.map(unwrap))),
    exec: (q: string) => (inv.d1(Math.max(1, q.split(";").filter((p) => p.trim()).length)), db.exec(q)),
    withSession: (c?: string) => session(db.withSession(c)),
    dump: () => (inv.d1(1), (db as unknown as { dump(): Promise<ArrayBuffer> }).dump()),
  } as unknown as D1Database;
}

const bytesOf = (body: unknown) => {
  try {
    return typeof body === "string" ? body.length : (JSON.stringify(body)?.length ?? 0);
  } catch {
    return 0; // not JSON (structured clone): not measured
  }
};

function countingQueue(q: Queue, inv: Invocation): Queue {
  return {
    send: (body: unknown, opts?: QueueSendOptions) => (inv.queueSend(1, bytesOf(body)), q.send(body, opts)),
    sendBatch: (msgs: Iterable<MessageSendRequest>, opts?: QueueSendBatchOptions) => {
      const list = [...msgs];
      inv.queueSend(list.length, list.reduce((n, m) => n + bytesOf(m.body), 0));
      return q.sendBatch(list, opts);
    },
  } as unknown as Queue;
}

/** Every call on a stub (RPC method or fetch) is a subrequest; ids and stubs themselves are free. */
function countingStub<T extends object>(stub: T, inv: Invocation): T {
  return new Proxy(stub, {
    get(target, key) {
      const v: unknown = Reflect.get(target, key);
      if (typeof v !== "function" || key === "then") return v;
      // Reflect.apply: on an RPC stub, `.apply`/`.bind` would be remote method names.
      if (typeof key === "symbol") return (...args: unknown[]) => Reflect.apply(v, target, args);
      return (...args: unknown[]) => {
        inv.subrequest();
        return Reflect.apply(v, target, args);
      };
    },
  });
}

function countingNamespace(ns: DurableObjectNamespace, inv: Invocation): DurableObjectNamespace {
  return new Proxy(ns, {
    get(target, key) {
      const v: unknown = Reflect.get(target, key);
      if (key === "get" || key === "getByName") return (...args: unknown[]) => countingStub(Reflect.apply(v as (...a: unknown[]) => object, target, args), inv);
      return typeof v === "function" ? (...args: unknown[]) => Reflect.apply(v, target, args) : v;
    },
  });
}

function countingR2(bucket: R2Bucket, inv: Invocation): R2Bucket {
  return countingStub(bucket, inv);
}

function countingFetcher(f: Fetcher, inv: Invocation): Fetcher {
  return countingStub(f, inv);
}

let fetchCounted = false;
/** Global `fetch` (gateways, webhook deliveries) counts into the invocation running it, found by async context. */
function installFetchCounter() {
  if (fetchCounted) return;
  fetchCounted = true;
  const original = globalThis.fetch;
  globalThis.fetch = function countedFetch(this: unknown, ...args: Parameters<typeof fetch>) {
    current.getStore()?.subrequest();
    return original.apply(this, args);
  } as typeof fetch;
}
