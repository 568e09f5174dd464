import type { Role } from "./http/auth";

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
  };
};
