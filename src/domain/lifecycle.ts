/**
 * A money object's lifecycle, declared once: its states and the moves allowed between them. Owners (one module per
 * aggregate) ask `assertMove` before they build the guarded UPDATE of a status column; nothing else writes a status.
 */
export type TransitionTable<S extends string> = { readonly [K in S]: readonly S[] };

/** A move the table forbids: a domain error, mapped once to 409 problem+json naming the current state. */
export class IllegalTransition extends Error {
  constructor(
    readonly aggregate: string,
    readonly id: string,
    readonly from: string,
    readonly to: string,
  ) {
    super(`${aggregate} ${id} is ${from}; it cannot become ${to}`);
    this.name = "IllegalTransition";
  }
}

export type Lifecycle<S extends string> = {
  readonly aggregate: string;
  readonly states: readonly S[];
  readonly table: TransitionTable<S>;
  /** True when `from → to` is a declared edge. Staying in the same state is never a transition. */
  canMove(from: S, to: S): boolean;
  /** Throws `IllegalTransition` unless `from → to` is a declared edge. */
  assertMove(id: string, from: S, to: S): void;
  /** The states `from` may move to, in declared order. */
  next(from: S): readonly S[];
  /** States with no way out. */
  terminal(): S[];
};

export function defineLifecycle<S extends string>(aggregate: string, table: { readonly [K in S]: readonly NoInfer<S>[] }): Lifecycle<S> {
  const states = Object.keys(table) as S[];
  for (const [from, tos] of Object.entries(table) as [S, readonly S[]][]) {
    for (const to of tos) {
      if (!(to in table)) throw new Error(`${aggregate}: ${from} → ${to} names an undeclared state`);
      if (to === from) throw new Error(`${aggregate}: ${from} → ${from} is not a transition`);
    }
  }
  const canMove = (from: S, to: S) => (table[from] ?? []).includes(to);
  return {
    aggregate,
    states,
    table,
    canMove,
    assertMove(id, from, to) {
      if (!canMove(from, to)) throw new IllegalTransition(aggregate, id, from, to);
    },
    next: (from) => table[from] ?? [],
    terminal: () => states.filter((s) => table[s].length === 0),
  };
}
