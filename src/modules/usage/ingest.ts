import type { IngestOutcome } from "./meter-types";
import { encodeEvents } from "./meter-wire";
import { meterStub } from "./meter-config";
import type { ParsedEvent } from "./events";

export type IngestSummary = { accepted: number; duplicates: number; rejected: number; outcomes: IngestOutcome[] };

/** Groups events by subscription and asks each subscription's meter, in parallel; never touches D1. */
export async function ingestEvents(env: Env, events: ParsedEvent[], now: number): Promise<IngestOutcome[]> {
  const bySubscription = new Map<string, ParsedEvent[]>();
  for (const e of events) {
    const list = bySubscription.get(e.subscriptionId);
    if (list) list.push(e);
    else bySubscription.set(e.subscriptionId, [e]);
  }
  const results = await Promise.all(
    [...bySubscription].map(async ([subscriptionId, list]): Promise<IngestOutcome[]> => {
      try {
        const reply = await meterStub(env, subscriptionId).ingest(encodeEvents(list), now);
        const outcomes = reply.others;
        for (const slot of reply.accepted) outcomes.push({ index: list[slot]!.index, eventId: list[slot]!.eventId, status: "accepted" });
        return outcomes;
      } catch (e) {
        // Nothing of this group is known to be stored: the client retries it; event keys make that safe.
        console.log(JSON.stringify({ level: "error", msg: "meter ingest failed", subscriptionId, error: String(e) }));
        return list.map((ev) => ({ index: ev.index, eventId: ev.eventId, status: "rejected" as const, reason: "meter_unavailable" as const, detail: "the usage meter did not answer; retry the event", retryable: true }));
      }
    }),
  );
  return results.flat();
}

export function summarise(outcomes: IngestOutcome[]): IngestSummary {
  let accepted = 0;
  let duplicates = 0;
  let rejected = 0;
  for (const o of outcomes) {
    if (o.status === "accepted") accepted++;
    else if (o.status === "duplicate") duplicates++;
    else rejected++;
  }
  return { accepted, duplicates, rejected, outcomes: outcomes.sort((a, b) => a.index - b.index) };
}
