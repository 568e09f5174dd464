import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole, requireScopeOrRole } from "../../http/auth";
import { problems, jsonBody, jsonResponse, listOf, PaginationQuery, router } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { CreateCustomer, Customer, UpdateCustomer } from "./schemas";
import { STRIPE_CUSTOMER_KEY, syncStripeCustomerId } from "../usage/routing";
import { createCustomer, deleteCustomer, getCustomerRow, listCustomers, toCustomer, updateCustomer } from "./service";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "cus_123" }) });

export const customerRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      operationId: "createCustomer",
      tags: ["Customers"],
      summary: "Create a customer",
      description:
        "Creates a customer billed in `currency`. `country` and `region` choose the tax rate; a `taxCertificate` with `taxExempt` makes invoices tax-free until it expires. The id may be supplied (`cus_…`).",
      middleware: [requireRole(access.customers)] as const,
      request: jsonBody(CreateCustomer),
      responses: { 201: jsonResponse(Customer, "The new customer"), ...problems(409, 422) },
    }),
    async (c) => respond(c, await createCustomer(services(c), c.req.valid("json")), 201),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      operationId: "listCustomers",
      tags: ["Customers"],
      summary: "List customers, newest first",
      description: "Cursor-paginated (`limit`, `startingAfter`); `email` filters on the exact address, `name` on a case-insensitive part of the name. Deleted customers only with `includeDeleted=true`.",
      middleware: [requireScopeOrRole("customers:read", access.read)] as const,
      request: {
        query: PaginationQuery.extend({
          email: z.string().optional(),
          name: z.string().max(200).optional().openapi({ description: "Customers whose name contains this text (case-insensitive)" }),
          includeDeleted: z
            .enum(["true", "false"])
            .optional()
            .transform((v) => v === "true")
            .openapi({ description: "Also list deleted customers (left out by default)" }),
        }),
      },
      responses: { 200: jsonResponse(listOf(Customer), "A page of customers") },
    }),
    async (c) => c.json(await listCustomers(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      operationId: "getCustomer",
      tags: ["Customers"],
      summary: "Get a customer",
      description: "The customer with its tax certificate and metadata.",
      middleware: [requireScopeOrRole("customers:read", access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Customer, "The customer"), ...problems(404) },
    }),
    async (c) => {
      const found = await getCustomerRow(dbOf(c.env), c.req.valid("param").id);
      return found.ok ? c.json(toCustomer(found.value), 200) : problem(c, found.error);
    },
  )
  .openapi(
    createRoute({
      method: "patch",
      path: "/{id}",
      operationId: "updateCustomer",
      tags: ["Customers"],
      summary: "Update a customer",
      description: "Changes the given fields; `metadata` keys are merged into the existing ones (a key set to an empty string is removed).",
      middleware: [requireRole(access.customers)] as const,
      request: { params: IdParam, ...jsonBody(UpdateCustomer) },
      responses: { 200: jsonResponse(Customer, "The updated customer"), ...problems(404, 409) },
    }),
    async (c) => {
      const input = c.req.valid("json");
      const updated = await updateCustomer(services(c), c.req.valid("param").id, input);
      if (!updated.ok) return problem(c, updated.error);
      // Drop-in ingestion finds the customer by its Stripe id: the directory follows a change of that key.
      if (input.metadata && STRIPE_CUSTOMER_KEY in input.metadata) await syncStripeCustomerId(services(c), updated.value.id, updated.value.metadata[STRIPE_CUSTOMER_KEY] ?? null);
      return c.json(updated.value, 200);
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{id}",
      operationId: "deleteCustomer",
      tags: ["Customers"],
      summary: "Delete a customer",
      description:
        "Soft-deletes the customer (`deleted: true`) and emits `customer.deleted`: it stays readable with its invoices, payments and events, is left out of lists unless `includeDeleted=true`, and refuses changes and new subscriptions (409). Nothing is canceled silently: a customer with subscriptions not canceled, or draft or open invoices, is refused with 409 naming them. Deleting a deleted customer answers 200 and changes nothing.",
      middleware: [requireRole(access.customers)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Customer, "The deleted customer"), ...problems(404, 409) },
    }),
    async (c) => respond(c, await deleteCustomer(services(c), c.req.valid("param").id), 200),
  );
