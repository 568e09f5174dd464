import { formatDecimal } from "./decimal";

export type Aggregation = "sum" | "count" | "max" | "unique_count" | "latest";

/** Running state of one meter in one period; quantities are SCALE-12 bigints. */
export type AggregateState = {
  sum: bigint;
  count: number;
  max: bigint | null;
  latest: bigint | null;
  /** Event time of `latest`; a later-arriving event with an equal time replaces it. */
  latestAt: number | null;
  uniqueCount: number;
};

export const emptyAggregate = (): AggregateState => ({ sum: 0n, count: 0, max: null, latest: null, latestAt: null, uniqueCount: 0 });

/** Folds one accepted event in; `isNewUnique` says whether its unique_count value was unseen this period. */
export function applyEvent(state: AggregateState, quantity: bigint, at: number, isNewUnique: boolean): AggregateState {
  const newer = state.latestAt === null || at >= state.latestAt;
  return {
    sum: state.sum + quantity,
    count: state.count + 1,
    max: state.max === null || quantity > state.max ? quantity : state.max,
    latest: newer ? quantity : state.latest,
    latestAt: newer ? at : state.latestAt,
    uniqueCount: state.uniqueCount + (isNewUnique ? 1 : 0),
  };
}

/** The billable value of a meter: what its aggregation makes of the period's events (0 when none). */
export function aggregateValue(state: AggregateState, aggregation: Aggregation): bigint {
  switch (aggregation) {
    case "sum":
      return state.sum;
    case "count":
      return BigInt(state.count) * 10n ** 12n;
    case "max":
      return state.max ?? 0n;
    case "latest":
      return state.latest ?? 0n;
    case "unique_count":
      return BigInt(state.uniqueCount) * 10n ** 12n;
  }
}

export const aggregateValueString = (state: AggregateState, aggregation: Aggregation) => formatDecimal(aggregateValue(state, aggregation));
