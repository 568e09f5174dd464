import { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { getSetting } from "../../platform/settings";

export const RETRY_CONFIG_KEY = "payments.retry";

export const RetryConfig = z
  .object({
    maxAttempts: z.number().int().min(1).max(20),
    backoffMultiplier: z.number().min(1).max(10),
    initialDelay: z.number().int().min(0).max(7 * 86_400).openapi({ description: "Seconds before the second attempt" }),
    gracePeriodDays: z.number().int().min(0).max(90).openapi({ description: "Days a past_due invoice stays open before it is marked uncollectible" }),
  })
  .openapi("RetryConfig");
export type RetryConfig = z.infer<typeof RetryConfig>;

export const DEFAULT_RETRY: RetryConfig = { maxAttempts: 4, backoffMultiplier: 2, initialDelay: 3600, gracePeriodDays: 7 };

export const retryConfig = (db: Db) => getSetting<RetryConfig>(db, RETRY_CONFIG_KEY, DEFAULT_RETRY);

/** Seconds to wait before attempt `next` (≥ 2): initialDelay × multiplier^(next − 2). */
export function retryDelaySeconds(config: RetryConfig, next: number): number {
  return Math.round(config.initialDelay * config.backoffMultiplier ** Math.max(0, next - 2));
}

/** Cloudflare Queues delay at most 12 h; longer waits are picked up by the hourly cron from `nextRetryAt`. */
export const MAX_QUEUE_DELAY_SECONDS = 12 * 3600;
