import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq, gte, lt, lte, or, sql, type SQL } from "drizzle-orm";
import { access, requireRole } from "../../http/auth";
import { jsonResponse, listOf, PaginationQuery, router, problems } from "../../http/openapi";
import { dbOf, type Db } from "../../db/client";
import { toPage } from "../../platform/pagination";
import { events } from "../../db/schema";
import { respond } from "../../http/problem";
import { fail, notFound, ok, type Outcome } from "../../platform/failure";
import { toEvent, type EventRow } from "../../platform/events";
import { archivedThrough } from "../retention/run";
import { iso } from "../../lib/time";

const Instant = z.iso.datetime({ offset: true }).openapi({ example: "2024-06-01T00:00:00Z" });

export const ListEventsQuery = PaginationQuery.extend({
  type: z
    .string()
    .max(100)
    .optional()
    .openapi({ example: "invoice.*", description: "An event type (`invoice.paid`) or a prefix ending in `.*` (`invoice.*`, `customer.subscription.*`)" }),
  objectId: z.string().max(100).optional().openapi({ example: "in_123", description: "Events about this object (`data.object.id`)" }),
  customerId: z.string().max(100).optional().openapi({ example: "cus_123", description: "Events about this customer and its subscriptions, invoices, payments and refunds" }),
  createdGte: Instant.optional().openapi({ description: "Created at or after (ISO date-time)" }),
  createdLte: Instant.optional().openapi({ description: "Created at or before (ISO date-time)" }),
});

export const Event = z
  .object({
    id: z.string().openapi({ example: "evt_123" }),
    object: z.literal("event"),
    type: z.string().openapi({ example: "invoice.paid" }),
    createdAt: z.string(),
    livemode: z.boolean(),
    requestId: z.string().nullable(),
    data: z.object({
      object: z.unknown().openapi({ description: "The object after the change, exactly as the REST API returns it" }),
      previousAttributes: z.record(z.string(), z.unknown()).nullable().openapi({ description: "The changed fields with their values before the change" }),
    }),
  })
  .openapi("Event");

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "evt_123" }) });

const TYPE = /^[a-z_]+(\.[a-z_]+)*$/;

/** `type` as a filter: an exact type, or a prefix (`invoice.*` → every type starting with `invoice.`). */
function typeFilter(type: string | undefined): Outcome<SQL | undefined, "validation_failed"> {
  if (!type) return ok(undefined);
  if (type.endsWith(".*") && TYPE.test(type.slice(0, -2))) {
    const prefix = type.slice(0, -1); // "invoice."
    // A range on the indexed column ('/' sorts right after '.'), not LIKE (whose `_` would be a wildcard).
    return ok(and(gte(events.type, prefix), lt(events.type, `${prefix.slice(0, -1)}/`)));
  }
  if (!TYPE.test(type)) return fail("validation_failed", `type: ${type} is not an event type (invoice.paid) or a prefix ending in .* (invoice.*)`, [{ path: "type", message: "an event type or a prefix ending in .*" }]);
  return ok(eq(events.type, type));
}

type Position = { createdAt: number; id: string };

/**
 * Newest first by (createdAt, id). Event ids sort by creation time and, within one millisecond, by the order they
 * were made in (src/lib/ids.ts sortableId), so this is also id order: a refund's `refund.succeeded` is listed
 * before its `refund.created`. (Ids written before sortable ids were random: those tie-break arbitrarily.)
 */
export async function listEvents(db: Db, q: z.infer<typeof ListEventsQuery>) {
  let at: Position | undefined;
  if (q.startingAfter) {
    at = await db.select({ createdAt: events.createdAt, id: events.id }).from(events).where(eq(events.id, q.startingAfter)).get();
    if (!at) return fail("validation_failed", `startingAfter: no object with id ${q.startingAfter}`, [{ path: "startingAfter", message: "unknown id" }]);
  }
  const byType = typeFilter(q.type);
  if (!byType.ok) return byType;
  const rows = await db
    .select()
    .from(events)
    .where(
      and(
        at ? or(lt(events.createdAt, at.createdAt), and(eq(events.createdAt, at.createdAt), lt(events.id, at.id))) : undefined,
        byType.value,
        q.objectId ? eq(events.objectId, q.objectId) : undefined,
        q.customerId ? eq(events.customerId, q.customerId) : undefined,
        q.createdGte ? gte(events.createdAt, Date.parse(q.createdGte)) : undefined,
        q.createdLte ? lte(events.createdAt, Date.parse(q.createdLte)) : undefined,
      ),
    )
    .orderBy(desc(events.createdAt), desc(events.id))
    .limit(q.limit + 1)
    .all();
  const page = toPage(rows, q.limit, toEvent);
  // Past the retention policy events are in R2: a list reaching back that far says so instead of looking complete.
  const through = page.hasMore ? null : await archivedThrough(db, "events");
  const reachesArchive = through !== null && (!q.createdGte || Date.parse(q.createdGte) <= through);
  return ok({ ...page, archived: reachesArchive ? { through: iso(through), archives: "/admin/retention/archives?kind=events" } : null });
}

/** One event; a missing one may have been archived, and then the 404 says where it went. */
async function getEvent(db: Db, id: string): Promise<Outcome<ReturnType<typeof toEvent>, "not_found">> {
  const row = await db.select().from(events).where(eq(events.id, id)).get();
  if (row) return ok(toEvent(row));
  const through = await archivedThrough(db, "events");
  if (through === null) return notFound("event", id);
  return fail("not_found", `No event ${id}. Events created up to ${iso(through)} were archived to R2 by the retention policy (GET /admin/retention/archives?kind=events).`);
}

export const eventRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Events"],
      operationId: "listEvents",
      summary: "List events",
      description: "Newest first; kept 30 days in D1 (the retention policy's `eventsDays`), older ones are archived to R2 and the last page says so (`archived`). Filter by type (or `prefix.*`), object and creation time.",
      middleware: [requireRole(access.read)] as const,
      request: { query: ListEventsQuery },
      responses: {
        200: jsonResponse(
          listOf(Event).extend({
            archived: z
              .object({ through: z.string(), archives: z.string() })
              .nullable()
              .openapi({ description: "On the last page of a list reaching back past the retention policy: events created up to `through` were moved to R2 and are not listed (the archives are listed at `archives`, admin only)" }),
          }),
          "A page of events",
        ),
        ...problems(400),
      },
    }),
    async (c) => respond(c, await listEvents(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Events"],
      operationId: "getEvent",
      summary: "Get an event",
      description: "One event with the object after the change and the changed attributes.",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Event, "The event"), ...problems(404) },
    }),
    async (c) => respond(c, await getEvent(dbOf(c.env), c.req.valid("param").id), 200),
  );
