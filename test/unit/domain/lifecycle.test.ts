import { describe, expect, it } from "vitest";
import { defineLifecycle, IllegalTransition } from "../../../src/domain/lifecycle";

const door = defineLifecycle("door", { open: ["closed"], closed: ["open", "locked"], locked: ["closed"], gone: [] });

describe("defineLifecycle", () => {
  it("allows exactly the declared edges", () => {
    expect(door.canMove("open", "closed")).toBe(true);
    expect(door.canMove("open", "locked")).toBe(false);
    expect(door.canMove("closed", "closed")).toBe(false);
    expect(door.next("closed")).toEqual(["open", "locked"]);
    expect(door.terminal()).toEqual(["gone"]);
  });

  it("refuses an illegal move with a typed error naming the current state", () => {
    expect(() => door.assertMove("d1", "open", "locked")).toThrow(IllegalTransition);
    try {
      door.assertMove("d1", "gone", "open");
    } catch (e) {
      expect(e).toMatchObject({ aggregate: "door", id: "d1", from: "gone", to: "open" });
      expect((e as Error).message).toBe("door d1 is gone; it cannot become open");
    }
  });

  it("rejects a table that names an undeclared state or a self-loop", () => {
    expect(() => defineLifecycle("bad", { a: ["b"] } as never)).toThrow(/undeclared/);
    expect(() => defineLifecycle("bad", { a: ["a"] })).toThrow(/not a transition/);
  });
});
