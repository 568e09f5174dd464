import { z } from "@hono/zod-openapi";
import { CurrencyCode } from "../customers/schemas";
import { WINDOWS } from "./performance";

const GatewayName = z.string().min(1).max(40).openapi({ example: "stripe", description: "A configured gateway: stripe (when STRIPE_SECRET_KEY is set) or sandbox" });
const Iso = z.string().nullable();

export const Routing = z
  .object({
    primary: z.string(),
    backup: z.string().nullable(),
    primaryDown: z.boolean(),
    downReason: z.string().nullable(),
    downSince: Iso,
    activeGateway: z.string().openapi({ description: "Where new charges go: the backup while the primary is marked down" }),
  })
  .openapi("GatewayRouting");

export const GatewayStatus = z
  .object({
    status: z.enum(["ok", "degraded", "down"]),
    routing: Routing,
    gateways: z.array(
      z.object({
        name: z.string(),
        role: z.enum(["primary", "backup", "standby"]),
        configured: z.boolean(),
        mode: z.enum(["embedded", "test", "live"]),
        status: z.enum(["up", "down"]),
        markedDown: z.boolean(),
        receivingCharges: z.boolean(),
        latencyMs: z.number(),
        detail: z.string().optional(),
        error: z.string().optional(),
        faults: z.object({ latencyMs: z.number(), failureRate: z.number() }).optional(),
        checkedAt: Iso,
      }),
    ),
    checkedAt: Iso,
  })
  .openapi("GatewayStatus");

export const GatewayTestRequest = z
  .object({
    gateway: GatewayName,
    amount: z
      .union([z.string(), z.number()])
      .default("1")
      .openapi({ type: "string", example: "1.00", description: "Major units (decimal); at most the configured cap (GET /admin/gateways/test-config, 1.00 by default)" }),
    currency: CurrencyCode.default("USD"),
    paymentMethod: z.unknown().optional().openapi({
      deprecated: true,
      description: "Refused (422): the test always charges the gateway's own test payment method (pm_card_visa on the sandbox and in Stripe test mode; the configured one with a live key)",
    }),
  })
  .openapi("GatewayTestRequest");

const MaxAmount = z
  .string()
  .regex(/^\d{1,9}(\.\d{1,3})?$/, "a non-negative decimal string such as \"1.00\"")
  .openapi({ example: "1.00", description: "Largest test charge, in major units of the test's currency; \"0\" disables the test" });

export const GatewayTestConfig = z
  .object({
    maxAmount: MaxAmount,
    stripePaymentMethod: z.string().nullable().openapi({ example: "pm_1Q…", description: "The method a live Stripe key charges for the test (required with a live key); in test mode it replaces pm_card_visa" }),
    stripeCustomerId: z.string().nullable().openapi({ example: "cus_…", description: "The Stripe customer that method is saved to (Stripe charges a saved method only with its customer)" }),
  })
  .openapi("GatewayTestConfig");

export const GatewayTestConfigPatch = z
  .object({
    maxAmount: MaxAmount.optional(),
    stripePaymentMethod: z.string().min(1).max(255).nullable().optional(),
    stripeCustomerId: z.string().min(1).max(255).nullable().optional(),
  })
  .openapi("GatewayTestConfigPatch");

const Step = z.object({
  status: z.string().openapi({ description: "succeeded, pending, failed, or error (the gateway call threw)" }),
  latencyMs: z.number(),
  id: z.string().nullable(),
  failureCode: z.string().optional(),
  failureMessage: z.string().optional(),
  error: z.string().optional(),
});

export const GatewayTestReport = z
  .object({
    gateway: z.string(),
    ok: z.boolean(),
    amount: z.string(),
    amountMinor: z.number().int(),
    currency: z.string(),
    paymentMethod: z.string(),
    idempotencyKey: z.string(),
    latencyMs: z.number(),
    charge: Step,
    refund: Step.nullable(),
    testedAt: Iso,
  })
  .openapi("GatewayTestReport");

export const MetricsQuery = z.object({
  window: z.enum(Object.keys(WINDOWS) as [keyof typeof WINDOWS, ...(keyof typeof WINDOWS)[]]).default("24h").openapi({ description: "1h, 24h or 7d" }),
});

const Latency = z.object({ samples: z.number().int(), p50: z.number().nullable(), p95: z.number().nullable(), p99: z.number().nullable() });

export const GatewayMetrics = z
  .object({
    window: z.string(),
    from: Iso,
    to: Iso,
    gateways: z.array(
      z.object({
        gateway: z.string(),
        attempts: z.number().int(),
        succeeded: z.number().int(),
        failed: z.number().int(),
        inFlight: z.number().int(),
        successRate: z.string().nullable().openapi({ example: "0.9712", description: "succeeded / (succeeded + failed), 4 decimals" }),
        latencyMs: Latency,
        volume: z.array(z.object({ currency: z.string(), amount: z.string(), amountMinor: z.number().int(), payments: z.number().int() })),
      }),
    ),
  })
  .openapi("GatewayMetrics");

export const FailoverRequest = z
  .object({ primary: GatewayName, backup: GatewayName, reason: z.string().max(500).optional() })
  .openapi("GatewayFailoverRequest");
export const RestoreRequest = z.object({ reason: z.string().max(500).optional() }).openapi("GatewayRestoreRequest");

export const SandboxFaults = z
  .object({
    latencyMs: z.number().int().min(0).max(30_000).default(0),
    failureRate: z.number().min(0).max(1).default(0).openapi({ description: "Probability (0-1) that a sandbox call throws a gateway error" }),
  })
  .openapi("SandboxFaults");
