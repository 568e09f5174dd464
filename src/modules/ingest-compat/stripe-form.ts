// Pure (no runtime imports): the node unit tests read it without loading the Workers runtime.
const UNSAFE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** One form component as URLSearchParams reads it ('+' is a space, %XX a UTF-8 byte); null when V8 cannot decode it. */
function decodeComponent(s: string): string | null {
  const t = s.includes("+") ? s.replaceAll("+", " ") : s;
  if (!t.includes("%")) return t;
  try {
    return decodeURIComponent(t);
  } catch {
    return null; // a stray '%' or bytes that are not UTF-8: URLSearchParams' lenient rules apply
  }
}

/**
 * A form body's name/value pairs, exactly as `new URLSearchParams(text)` gives them. Split and decoded in script:
 * URLSearchParams crosses into the runtime for every pair, which costs a single Stripe event a few µs. Whatever
 * decodeURIComponent refuses (a '%' without two hex digits, bytes that are not UTF-8), and text that is not well
 * formed (lone surrogates, which URLSearchParams replaces), goes to URLSearchParams itself.
 */
export function formPairs(text: string): [string, string][] {
  if (!text.isWellFormed()) return [...new URLSearchParams(text)];
  const pairs: [string, string][] = [];
  // As URLSearchParams' constructor does, one leading '?' is not part of the first name.
  for (const part of (text.startsWith("?") ? text.slice(1) : text).split("&")) {
    if (!part) continue;
    const eq = part.indexOf("=");
    const name = decodeComponent(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? "" : decodeComponent(part.slice(eq + 1));
    if (name === null || value === null) return [...new URLSearchParams(text)];
    pairs.push([name, value]);
  }
  return pairs;
}

/** `a[b][c]=v` form keys → nested objects, as Stripe encodes its parameters (keys that could reach a prototype are dropped). */
export function parseStripeForm(text: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of formPairs(text)) {
    const path = key.includes("[") || key.includes("]") ? key.replaceAll("]", "").split("[") : [key];
    if (path.some((p) => UNSAFE_KEYS.has(p))) continue;
    let node = out;
    for (let i = 0; i < path.length; i++) {
      const part = path[i]!;
      if (i === path.length - 1) node[part] = value;
      else {
        const next = Object.hasOwn(node, part) ? node[part] : undefined;
        node = (typeof next === "object" && next !== null ? next : (node[part] = {})) as Record<string, unknown>;
      }
    }
  }
  return out;
}
