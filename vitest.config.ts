import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
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

// Integration files that need a runtime of their own. webhook-endpoints drives the real queues under fake timers,
// which work a previous file left in flight would disturb.
const ownRuntime = ["test/modules/webhook-endpoints.test.ts"];

const workersProject = async (name: string, files: { include: string[]; exclude?: string[]; isolate: boolean }) => ({
  plugins: [
    quietStripeSourcemaps,
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          TEST_MIGRATIONS: await readD1Migrations("./migrations"),
          // Every invocation through the worker's entry points runs under Cloudflare's limits (src/platform/limits.ts).
          LIMITS: "enforce",
          ...testSecrets,
        },
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
    projects: [
      {
        test: {
          name: "unit",
          environment: "node",
          include: ["test/unit/**/*.test.ts"],
        },
      },
      await workersProject("workers", { include: ["test/**/*.test.ts"], exclude: ["test/unit/**", ...ownRuntime], isolate: false }),
      await workersProject("workers-own-runtime", { include: ownRuntime, isolate: true }),
    ],
  },
}));
