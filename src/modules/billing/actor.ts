import type { Actor } from "../../env";

/** The actor of scheduled billing work (the hourly run, renewals, the jobs queue) in audit rows. */
export const SYSTEM_ACTOR: Actor = { id: "system:billing", kind: "system", role: "system", scopes: [] };
