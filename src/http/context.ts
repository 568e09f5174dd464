import type { Context } from "hono";
import type { HonoEnv } from "../env";
import type { AuditContext } from "../platform/audit";
import { servicesFor, type Services } from "../platform/services";
import { actorOf } from "./auth";
import { systemActor } from "../platform/actor";

/** Who, which request, and when: what every audited change records. */
export function auditCtx(c: Context<HonoEnv>, now?: number): AuditContext {
  const idempotencyKey = c.get("idempotencyKey");
  // Without an explicit time the request's wall clock: events about test-clock objects then take their clock's time.
  const wall = Date.now();
  return { actor: actorOf(c), requestId: c.get("requestId"), now: now ?? wall, ...(now === undefined ? { wallClock: wall } : {}), ...(idempotencyKey ? { idempotencyKey } : {}) };
}

/** Who acts on a public route (a hosted invoice link, an inbound webhook): no caller is authenticated there. */
const PUBLIC_ACTOR = systemActor("http");

/**
 * The request's Services, made on first use in a handler (so after auth and idempotency: its `audit` has the actor
 * and the idempotency key) and kept for the rest of the request. On a public route it acts as `system:http`.
 */
export function services(c: Context<HonoEnv>): Services {
  let s = c.get("services");
  if (!s) {
    const wall = Date.now();
    const audit = c.get("actor") ? auditCtx(c) : { actor: PUBLIC_ACTOR, requestId: c.get("requestId"), now: wall, wallClock: wall };
    s = servicesFor(c.env, audit);
    c.set("services", s);
  }
  return s;
}

/**
 * The request's wall clock (services(c).clock.wall) without building the request's Services: the usage ingestion
 * routes need only this number, and each usage meter applies its subscription's test clock itself.
 */
export const wallClock = (c: Context<HonoEnv>): number => c.get("services")?.clock.wall ?? Date.now();
