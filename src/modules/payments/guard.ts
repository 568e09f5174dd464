export const paymentGuard = (env: Env) => env.PAYMENT_GUARD.get(env.PAYMENT_GUARD.idFromName("global"));
