// Who is signed in. The role is read from the JWT payload for display and to hide what the role cannot do;
// the API decides every call on its own (a hidden button is a courtesy, not a control).
import { currentToken, setToken } from "./api";

export type Role = "admin" | "finance" | "support" | "viewer" | "api_key";
export type Session = { token: string; role: Role; subject: string; expiresAt: number | null };

export function decodeSession(token: string): Session | null {
  const t = token.trim().replace(/^Bearer\s+/i, "");
  if (t.startsWith("bek_")) return { token: t, role: "api_key", subject: `API key ${t.slice(0, 12)}…`, expiresAt: null };
  const part = t.split(".")[1];
  if (!part) return null;
  try {
    const json = JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=")));
    const role = ["admin", "finance", "support", "viewer"].includes(json.role) ? (json.role as Role) : "viewer";
    return { token: t, role, subject: String(json.sub ?? "unknown"), expiresAt: typeof json.exp === "number" ? json.exp * 1000 : null };
  } catch {
    return null;
  }
}

export function restoreSession(): Session | null {
  const t = currentToken();
  const s = t ? decodeSession(t) : null;
  if (s?.expiresAt && s.expiresAt < Date.now()) {
    setToken(null);
    return null;
  }
  return s;
}

/** What each role may do (mirrors src/http/auth.ts `access`). */
export const can = {
  operateSubscriptions: (r: Role) => r === "admin" || r === "support",
  moveMoney: (r: Role) => r === "admin" || r === "finance",
  audit: (r: Role) => r === "admin" || r === "finance",
  admin: (r: Role) => r === "admin",
};
