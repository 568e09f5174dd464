/** Epoch ms → ISO-8601 UTC, or null. */
export function iso(ms: number): string;
export function iso(ms: number | null | undefined): string | null;
export function iso(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString();
}

export const DAY_MS = 86_400_000;

/** An ISO date (its UTC midnight) or date-time, as epoch ms. */
export const startOf = (s: string): number => Date.parse(s.length === 10 ? `${s}T00:00:00Z` : s);

/** Exclusive upper bound: a bare ISO date includes its whole UTC day; a date-time includes itself. */
export const endExclusiveOf = (s: string): number => (s.length === 10 ? startOf(s) + DAY_MS : Date.parse(s) + 1);
