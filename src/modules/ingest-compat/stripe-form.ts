// Pure (no runtime imports): the node unit tests read it without loading the Workers runtime.
const UNSAFE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** `a[b][c]=v` form keys → nested objects, as Stripe encodes its parameters (keys that could reach a prototype are dropped). */
export function parseStripeForm(text: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const path = key.replace(/\]/g, "").split("[");
    if (path.some((p) => UNSAFE_KEYS.has(p))) continue;
    let node = out;
    for (const [i, part] of path.entries()) {
      if (i === path.length - 1) node[part] = value;
      else {
        const next = Object.hasOwn(node, part) ? node[part] : undefined;
        node = (typeof next === "object" && next !== null ? next : (node[part] = {})) as Record<string, unknown>;
      }
    }
  }
  return out;
}
