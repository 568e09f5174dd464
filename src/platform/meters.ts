/** The UsageMeter Durable Object of a subscription (one per subscription): `s.meters.of`, or this where no Services is at hand (ingestion). */
export const usageMeterOf = (env: Env, subscriptionId: string) => env.USAGE_METER.get(env.USAGE_METER.idFromName(subscriptionId));
