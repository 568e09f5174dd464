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
};
// wrangler checks required secrets against process.env before the bindings below apply.
Object.assign(process.env, testSecrets);

// Two projects: pure logic in plain node (no runtime to start), integration in the Workers runtime. `npm test` runs both.
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
      {
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
          name: "workers",
          include: ["test/**/*.test.ts"],
          exclude: ["test/unit/**"],
          setupFiles: ["./test/apply-migrations.ts"],
        },
      },
    ],
  },
}));
