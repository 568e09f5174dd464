import { describe, expect, it } from "vitest";
import { aggregateValueString, applyEvent, emptyAggregate, type Aggregation } from "../../../src/domain/aggregation";
import { parseDecimal } from "../../../src/domain/decimal";

const q = (s: string | number) => {
  const d = parseDecimal(s);
  if (!d.ok) throw new Error(d.error);
  return d.value;
};

describe("aggregation", () => {
  const events: [string, number, boolean][] = [
    ["10", 1000, true],
    ["20", 2000, false],
  ];
  const state = events.reduce((s, [v, at, u]) => applyEvent(s, q(v), at, u), emptyAggregate());

  it.each<[Aggregation, string]>([
    ["sum", "30"],
    ["count", "2"],
    ["max", "20"],
    ["unique_count", "1"],
    ["latest", "20"],
  ])("%s of {10, u1} and {20, u1} is %s", (aggregation, expected) => {
    expect(aggregateValueString(state, aggregation)).toBe(expected);
  });

  it("latest follows event time; an equal time goes to the later arrival", () => {
    let s = applyEvent(emptyAggregate(), q(20), 1000, false);
    s = applyEvent(s, q(10), 2000, false);
    expect(aggregateValueString(s, "latest")).toBe("10");
    s = applyEvent(s, q(99), 1500, false);
    expect(aggregateValueString(s, "latest")).toBe("10");
    s = applyEvent(s, q(7), 2000, false);
    expect(aggregateValueString(s, "latest")).toBe("7");
  });

  it("an empty period is zero for every aggregation", () => {
    for (const a of ["sum", "count", "max", "unique_count", "latest"] as const) expect(aggregateValueString(emptyAggregate(), a)).toBe("0");
  });

  it("sums decimals exactly", () => {
    const s = ["0.1", "0.2", "0.000000000001"].reduce((acc, v) => applyEvent(acc, q(v), 0, false), emptyAggregate());
    expect(aggregateValueString(s, "sum")).toBe("0.300000000001");
  });
});
