import type { Role } from "./http/auth";
import type { Services } from "./platform/services";

/** Who is calling: a user token, an API key, or the system itself (cron, queues). */
export type Actor = {
  id: string;
  kind: "user" | "api_key" | "system";
  role: Role | "system" | "api_key";
  scopes: readonly string[];
};

export type HonoEnv = {
  Bindings: Env;
  Variables: {
    requestId: string;
    actor: Actor | undefined;
    /** The caller-scoped Idempotency-Key of this request, when it sent one. */
    idempotencyKey: string | undefined;
    /**
     * Set by a handler whose response carries a secret shown only once (an API key): the idempotency layer never
     * stores that response, and a repeat of the request gets a 409 naming the created object instead.
     */
    secretShownOnce: { object: string; id: string } | undefined;
    /** The request's Services (src/http/context.ts `services(c)`), made on first use. */
    services: Services | undefined;
  };
};
