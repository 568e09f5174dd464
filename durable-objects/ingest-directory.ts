import { DurableObject } from "cloudflare:workers";
import type { CustomerRouting, RoutingEntry } from "../src/modules/usage/routing";

/**
 * Who receives a customer's usage when the sender names the customer, not the subscription (Stripe meter events,
 * CloudEvents subjects). One object per customer (`customer:<id>`) holds its subscriptions that carry meters, as
 * pushed by the subscription code on every change (with the meter configuration: same versions, same cron resync);
 * one object per Stripe customer id (`stripe:<id>`) holds which customer carries that id. Nothing here reads D1:
 * the ingestion path asks this object only when its per-isolate cache has no fresh answer.
 *
 * Storage keys: `routing` → CustomerRouting (customer objects); `alias` → customer id (Stripe objects).
 */
export class IngestDirectory extends DurableObject<Env> {
  /** Customer objects: records a subscription's routing; an older version never overwrites a newer one. */
  async upsertSubscription(customerId: string, stripeCustomerId: string | null, entry: RoutingEntry): Promise<void> {
    const current = (await this.ctx.storage.get<CustomerRouting>("routing")) ?? { customerId, stripeCustomerId, subscriptions: {} };
    const held = current.subscriptions[entry.subscriptionId];
    if (held && held.version > entry.version) return;
    current.subscriptions[entry.subscriptionId] = entry;
    current.stripeCustomerId = stripeCustomerId;
    await this.ctx.storage.put("routing", current);
  }

  /** Customer objects: the customer's Stripe id changed (null: removed). */
  async setStripeCustomerId(customerId: string, stripeCustomerId: string | null): Promise<void> {
    const current = (await this.ctx.storage.get<CustomerRouting>("routing")) ?? { customerId, stripeCustomerId, subscriptions: {} };
    current.stripeCustomerId = stripeCustomerId;
    await this.ctx.storage.put("routing", current);
  }

  async routing(): Promise<CustomerRouting | null> {
    return (await this.ctx.storage.get<CustomerRouting>("routing")) ?? null;
  }

  /** Stripe-id objects: which customer carries this id (the customer object has the last word: see resolve). */
  async setAlias(customerId: string): Promise<void> {
    await this.ctx.storage.put("alias", customerId);
  }

  async alias(): Promise<string | null> {
    return (await this.ctx.storage.get<string>("alias")) ?? null;
  }
}
