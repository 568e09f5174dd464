import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole, requireScopeOrRole } from "../../http/auth";
import { errorResponses, jsonBody, jsonResponse, listOf, PaginationQuery, router } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { auditCtx } from "../../http/context";
import { CreateCustomer, Customer, UpdateCustomer } from "./schemas";
import { STRIPE_CUSTOMER_KEY, syncStripeCustomerId } from "../usage/routing";
import { createCustomer, getCustomerRow, listCustomers, toCustomer, updateCustomer } from "./service";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "cus_123" }) });

export const customerRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      tags: ["Customers"],
      summary: "Create a customer",
      middleware: [requireRole(access.customers)] as const,
      request: jsonBody(CreateCustomer),
      responses: { 201: jsonResponse(Customer, "The new customer"), ...errorResponses },
    }),
    async (c) => c.json(await createCustomer(dbOf(c.env), c.req.valid("json"), auditCtx(c)), 201),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Customers"],
      summary: "List customers, newest first",
      middleware: [requireScopeOrRole("customers:read", access.read)] as const,
      request: {
        query: PaginationQuery.extend({
          email: z.string().optional(),
          name: z.string().max(200).optional().openapi({ description: "Customers whose name contains this text (case-insensitive)" }),
        }),
      },
      responses: { 200: jsonResponse(listOf(Customer), "A page of customers"), ...errorResponses },
    }),
    async (c) => c.json(await listCustomers(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Customers"],
      summary: "Get a customer",
      middleware: [requireScopeOrRole("customers:read", access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Customer, "The customer"), ...errorResponses },
    }),
    async (c) => c.json(toCustomer(await getCustomerRow(dbOf(c.env), c.req.valid("param").id)), 200),
  )
  .openapi(
    createRoute({
      method: "patch",
      path: "/{id}",
      tags: ["Customers"],
      summary: "Update a customer (metadata keys are merged)",
      middleware: [requireRole(access.customers)] as const,
      request: { params: IdParam, ...jsonBody(UpdateCustomer) },
      responses: { 200: jsonResponse(Customer, "The updated customer"), ...errorResponses },
    }),
    async (c) => {
      const input = c.req.valid("json");
      const updated = await updateCustomer(dbOf(c.env), c.req.valid("param").id, input, auditCtx(c));
      // Drop-in ingestion finds the customer by its Stripe id: the directory follows a change of that key.
      if (input.metadata && STRIPE_CUSTOMER_KEY in input.metadata) await syncStripeCustomerId(c.env, updated.id, updated.metadata[STRIPE_CUSTOMER_KEY] ?? null);
      return c.json(updated, 200);
    },
  );
