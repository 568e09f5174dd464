import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { readdirSync, readFileSync } from "node:fs";
import { defineConfig, type Plugin } from "vitest/config";

// Stripe's package ships source maps pointing at files it does not publish; silence that noise only.
const quietStripeSourcemaps: Plugin = {
  name: "quiet-stripe-sourcemaps",
  configResolved(config) {
    const warnOnce = config.logger.warnOnce.bind(config.logger);
    config.logger.warnOnce = (msg, opts) => {
      if (msg.includes("points to missing source files")) return;
      warnOnce(msg, opts);
    };
  },
};

// The config runs in Node; the project's types are the Workers runtime's.
declare const process: { env: Record<string, string | undefined> };

const testSecrets = {
  JWT_SECRET: "test-secret-at-least-32-bytes-long-0123456789",
  STRIPE_SECRET_KEY: "",
  STRIPE_WEBHOOK_SECRET: "whsec_test_secret",
  EXPORT_ENCRYPTION_KEY: "fWvsSufiwLwEtAHhUpA5zeDe3MqmxqWa/9m2uzvfoFc=",
  // Not configured by default: tests that deliver pass their own URL and a fake receiver.
  NOTIFY_WEBHOOK_URL: "",
  NOTIFY_WEBHOOK_SECRET: "whsec_dGVzdC1ub3RpZnktc2VjcmV0",
  AUDIT_HMAC_KEY: "onwR8qO2Bx+8IV50FWqMkgbOApZLX7/N8JjMyst8NLE=",
  HOSTED_LINK_SECRET: "test-hosted-link-secret-0123456789abcdef",
};
// wrangler checks required secrets against process.env before the bindings below apply.
Object.assign(process.env, testSecrets);

// Integration files that need a runtime of their own (each costs a runtime start and a module load). None today:
// the PDF files came back once renders stopped hanging (fonts embedded whole, test/unit/documents-pdf-isolate.test.ts),
// and webhook-endpoints, which fakes only Date, shares the runtime: with 50 ms queue windows a previous file's queue
// work is done long before it starts. A file that needs one goes here.
const ownRuntime: string[] = [];

// The queue consumers wrangler.toml declares, with a 50 ms batch window instead of its 1 s: a test that waits on a real
// queue (vi.waitFor on a webhook delivery, a renewal from the jobs queue) waits out the window at every hop. Batch
// sizes, retries, retry delays and dead-letter queues stay as declared.
type Consumer = { queue: string; max_batch_size?: number; max_retries?: number; retry_delay?: number; dead_letter_queue?: string };
const testQueueConsumers = async () => {
  const { unstable_readConfig } = await import("wrangler");
  return Object.fromEntries(
    (unstable_readConfig({ config: "./wrangler.toml" }).queues.consumers ?? []).map((c: Consumer) => [
      c.queue,
      { maxBatchSize: c.max_batch_size, maxBatchTimeout: 0.05, maxRetries: c.max_retries, retryDelay: c.retry_delay, deadLetterQueue: c.dead_letter_queue },
    ]),
  );
};

// hono, zod and drizzle entry points the code imports (values, not types), read from the sources: all of them are
// pre-bundled together, so a new subpath (say hono/cors) joins the bundle instead of loading a second copy of the
// package beside it (two copies break instanceof checks such as HTTPException's).
const sharedDependencyEntries = () => {
  const entries = new Set<string>();
  for (const dir of ["src", "durable-objects", "queues", "test"])
    for (const file of readdirSync(dir, { recursive: true }) as string[])
      if (file.endsWith(".ts"))
        for (const m of readFileSync(`${dir}/${file}`, "utf8").matchAll(/^import (?!type\b)[^;]*? from "((?:hono|zod|drizzle-orm|@hono\/[^/"]+)(?:\/[^"]*)?)"/gm)) entries.add(m[1]!);
  return [...entries].sort();
};

const workersProject = async (name: string, files: { include: string[]; exclude?: string[]; isolate: boolean; fastQueues?: boolean }) => ({
  plugins: [
    quietStripeSourcemaps,
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          TEST_MIGRATIONS: await readD1Migrations("./migrations"),
          // Every invocation through the worker's entry points runs under Cloudflare's limits (src/platform/limits.ts).
          LIMITS: "enforce",
          // Tests that hold a path to a number of D1 round trips count them (src/db/round-trips.ts).
          COUNT_ROUND_TRIPS: "1",
          ...testSecrets,
        },
        ...(files.fastQueues ? { queueConsumers: await testQueueConsumers() } : {}),
      },
    }),
  ],
  test: {
    name,
    include: files.include,
    exclude: files.exclude ?? [],
    // isolate false: files share a runtime per vitest worker (a fresh one per file costs ~4x the time in module
    // loading); the setup file gives each file empty storage and cold caches instead.
    isolate: files.isolate,
    setupFiles: ["./test/apply-migrations.ts"],
    // The runtime fetches every module from vitest one round trip at a time; pre-bundling the big dependencies into a
    // few files (hundreds fewer round trips) cuts loading the app from ~6 s to ~4.5 s per runtime.
    deps: { optimizer: { ssr: { enabled: true, include: [...new Set([...sharedDependencyEntries(), "zod", "@hono/zod-validator"]), "jose", "stripe", "pdf-lib", "@pdf-lib/fontkit", "ajv/dist/2020.js", "ajv-formats"] } } },
    // Integration tests drive the whole worker; on a loaded 2-core machine a few take seconds.
    testTimeout: 20_000,
  },
});

// Projects: pure logic in plain node (no runtime to start), integration in the Workers runtime (most files sharing a
// runtime, a few with their own). `npm test` runs them all.
export default defineConfig(async () => ({
  test: {
    // The worker logs one JSON line per request and job; keep test output to failures and warnings.
    onConsoleLog: (log: string) => !/"level":"info"/.test(log),
    // Two vitest workers, so two Workers runtimes: each runtime runs its files on one thread, and the machine has two
    // cores (vitest's default here is one). Files stay independent: each starts from empty storage (the setup file),
    // and tests that read the limit counter's lines match only their own invocations.
    maxWorkers: 2,
    projects: [
      {
        test: {
          name: "unit",
          environment: "node",
          include: ["test/unit/**/*.test.ts"],
          // Pure logic: files share a thread and its module graph (zod, the domain) instead of a fresh fork each,
          // about half the CPU of the project; a file that patches a global restores it (documents-pdf-isolate).
          pool: "threads",
          isolate: false,
        },
      },
      await workersProject("workers", { include: ["test/**/*.test.ts"], exclude: ["test/unit/**", ...ownRuntime], isolate: false, fastQueues: true }),
      ...(ownRuntime.length ? [await workersProject("workers-own-runtime", { include: ownRuntime, isolate: true, fastQueues: true })] : []),
    ],
  },
}));
