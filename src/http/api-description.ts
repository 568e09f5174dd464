// The prose of the OpenAPI document: the introduction every reader of /docs (and of a generated client) starts from,
// and how to authenticate. Per-route summaries, descriptions and examples live beside each route.

const description = `
Subscriptions, usage metering, invoices and payments, served by one Cloudflare Worker. Everything on this page can be
tried against the server that serves it: set a token under **Authentication** and use **Test Request** on any
operation.

## Getting started

Run the engine locally (no Cloudflare or Stripe account needed), mint a token and make a first call:

\`\`\`bash
npm install && npm run dev   # serves :3401
export ADMIN_TOKEN=$(npm run -s token -- admin)
curl http://localhost:3401/api/v1/customers \\
  -H "Authorization: Bearer $ADMIN_TOKEN"
\`\`\`

\`npm run token -- <role>\` prints a 24-hour JWT signed with the local secret; paste it under **Authentication**
to try the operations here.

A typed TypeScript client generated from this document lives in \`clients/typescript\` (see \`docs/typescript.md\`).
The document itself is at [/openapi.json](/openapi.json) (OpenAPI 3.1).

## Authentication

Every route except \`/health*\`, \`/api/v1/gateways/status\` and Stripe's webhook needs
\`Authorization: Bearer <credential>\`, where the credential is one of:

- **A JWT with a role.** HS256, signed with the server's \`JWT_SECRET\`, issuer \`billing-engine\`, audience
  \`billing-api\`, with \`sub\`, \`iat\`, \`exp\` and a \`role\` claim. A token may live at most
  \`JWT_MAX_TTL_SECONDS\` (24 h by default). Roles: \`admin\` (everything), \`finance\` (money, catalogue, reports,
  refunds), \`support\` (reads, customers, subscription operations), \`viewer\` (reads). Locally,
  \`npm run token -- <role> [subject] [ttlSeconds]\` prints one.
- **An API key with scopes** (\`bek_…\`), for machines: created by an admin with \`POST /admin/api-keys\`, shown once
  (only its SHA-256 hash is stored), revoked with \`DELETE /admin/api-keys/{id}\` (effective everywhere within 30 s).
  A key may call only the routes its scopes allow, such as \`usage:write\` for usage ingestion.

A missing or invalid credential is a **401** (with a \`WWW-Authenticate: Bearer\` challenge); a valid credential whose
role or scopes do not cover the route is a **403**.

## Errors

Every error is an RFC 9457 \`application/problem+json\` body:

\`\`\`json
{ "type": "https://billing-engine.dev/problems/validation-failed", "title": "Validation failed", "status": 400,
  "detail": "invalid body: email: Invalid email address", "instance": "/api/v1/customers",
  "requestId": "req_…", "errors": [{ "path": "email", "message": "Invalid email address" }] }
\`\`\`

\`type\` is stable and names the kind; \`errors[]\` gives a field path per problem for validation failures;
\`requestId\` (also in the \`X-Request-Id\` header) finds the request in the logs. Statuses: **400** malformed
request or schema violation, **401**/**403** credentials or role, **404** unknown object or route, **409** a
conflict with the object's current state, **413** body over 2 MB, **415** not JSON, **422** a well-formed request
the rules refuse (e.g. a currency mismatch, a card number in a field), **423** payments frozen, **5xx** the
server's fault (never a stack trace). A stack trace or internal detail is never returned.

## Idempotency

Send \`Idempotency-Key: <unique string>\` (up to 255 characters) on any state-changing request to make it safe to
retry. The same key with the same body replays the stored response with \`Idempotent-Replayed: true\`; the same key
with another body is a **422**; a request still running under the key is a **409**. Keys are per caller and kept
24 hours. Authorization runs before any replay, and a refusal that changed nothing (401, 403, 409, 423, 429, 5xx)
does not use the key up. A response carrying a secret (an API key, a signing secret) is never stored: its repeat is
a **409** naming what was created. Usage ingestion dedupes each event by its \`eventId\` instead.

## Pagination

Lists take \`limit\` (1–100, default 20) and \`startingAfter\` (the last id of the previous page) and answer
\`{ "data": [...], "hasMore": true, "nextCursor": "…" }\`, newest first. Pass \`nextCursor\` as \`startingAfter\`
until \`hasMore\` is \`false\`.

## Money

Amounts are exact. Requests accept decimal major units as a number or a string (\`29.99\` or \`"29.99"\`), never
with more decimals than the currency allows (JPY 0, USD 2, BHD 3); unit prices may carry up to 12 decimals
(\`"0.0006"\`). Responses give \`amount\` (decimal string), \`amountMinor\` (integer minor units) and \`currency\`
(ISO 4217). Lines are rounded once, half away from zero; totals are sums of rounded lines.

## Time

All times are UTC. Requests and responses use ISO 8601 (\`2026-11-30T17:00:00Z\`, or a date \`2026-11-30\` where a
day is meant). Billing periods follow the subscription's anchor day and clamp to the end of shorter months.
`.trim();

export const apiInfo = {
  title: "Billing Engine",
  version: "0.1.0",
  description,
};

/** The one security scheme: a bearer credential that is either a role JWT or a scoped API key. */
export function bearerScheme(apiKeyScopes: readonly string[]) {
  return {
    type: "http" as const,
    scheme: "bearer",
    bearerFormat: "JWT or API key",
    description: [
      `A role JWT or a scoped API key, sent as \`Authorization: Bearer <credential>\`. Locally: \`npm run token -- admin\`.`,
      "",
      "- **JWT** (HS256, issuer `billing-engine`, audience `billing-api`, claims `sub`, `iat`, `exp` and `role`: `admin`, `finance`, `support` or `viewer`), living at most `JWT_MAX_TTL_SECONDS`.",
      `- **API key** \`bek_…\` created with \`POST /admin/api-keys\`, limited to its scopes (${apiKeyScopes.map((s) => `\`${s}\``).join(", ")}).`,
    ].join("\n"),
  };
}
