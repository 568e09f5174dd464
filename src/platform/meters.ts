/** The UsageMeter Durable Object of a subscription (one per subscription): `s.meters.of`, or this where no Services is at hand (ingestion). */
export const usageMeterOf = (env: Env, subscriptionId: string) => env.USAGE_METER.get(objectIdOf(env.USAGE_METER, subscriptionId));

// A name's object id is a keyed hash of the name: the same on every call, so an isolate computes it once per
// subscription rather than on every ingest (a 100-event batch reaches several meters). Ids are plain values, not I/O
// objects, so one made during a request may serve the next. Per namespace: an id belongs to the namespace it came from.
const IDS_CACHED = 10_000;
const ids = new WeakMap<object, Map<string, DurableObjectId>>();

export function objectIdOf<T extends Rpc.DurableObjectBranded | undefined>(ns: DurableObjectNamespace<T>, name: string): DurableObjectId {
  let byName = ids.get(ns);
  if (!byName) ids.set(ns, (byName = new Map()));
  let id = byName.get(name);
  if (!id) {
    if (byName.size >= IDS_CACHED) byName.clear();
    byName.set(name, (id = ns.idFromName(name)));
  }
  return id;
}
