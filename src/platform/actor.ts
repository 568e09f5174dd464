import type { Actor } from "../env";

/** The actor of work no person asked for (cron, queues, inbound webhooks) in audit rows: `system:<component>`. */
export const systemActor = (component: string): Actor => ({ id: `system:${component}`, kind: "system", role: "system", scopes: [] });

/** Scheduled billing work: the hourly run, renewals, the jobs queue. */
export const SYSTEM_ACTOR: Actor = systemActor("billing");
