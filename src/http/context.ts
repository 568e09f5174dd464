import type { Context } from "hono";
import type { HonoEnv } from "../env";
import type { AuditContext } from "../platform/audit";
import { actorOf } from "./auth";

/** Who, which request, and when: what every audited change records. */
export function auditCtx(c: Context<HonoEnv>, now?: number): AuditContext {
  const idempotencyKey = c.get("idempotencyKey");
  // Without an explicit time the request's wall clock: events about test-clock objects then take their clock's time.
  const wall = Date.now();
  return { actor: actorOf(c), requestId: c.get("requestId"), now: now ?? wall, ...(now === undefined ? { wallClock: wall } : {}), ...(idempotencyKey ? { idempotencyKey } : {}) };
}
