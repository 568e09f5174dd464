import type { Context } from "hono";
import type { HonoEnv } from "../env";
import type { AuditContext } from "../platform/audit";
import { actorOf } from "./auth";

/** Who, which request, and when: what every audited change records. */
export function auditCtx(c: Context<HonoEnv>, now = Date.now()): AuditContext {
  const idempotencyKey = c.get("idempotencyKey");
  return { actor: actorOf(c), requestId: c.get("requestId"), now, ...(idempotencyKey ? { idempotencyKey } : {}) };
}
