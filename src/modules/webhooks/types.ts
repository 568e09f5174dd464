import type { BatchItem } from "drizzle-orm/batch";
import type { AuditEntry } from "../../platform/audit";
import type { Db } from "../../db/client";
import type { Services } from "../../platform/services";
import type { Actor } from "../../env";
import { systemActor } from "../../platform/actor";

export const WEBHOOK_ACTOR: Actor = systemActor("stripe-webhook");

export type EventStatus = "processed" | "ignored" | "failed";

/**
 * What a handler decided. `commit`: these statements and audit rows, with the event's new status, in one batch
 * (so an event is applied at most once even when two deliveries race). `wait`: what it needs is not here yet.
 */
export type Commit = { kind: "commit"; status: EventStatus; note: string | null; statements: BatchItem<"sqlite">[]; audit: AuditEntry[]; afterCommit?: () => Promise<unknown> };
export type Decision = Commit | { kind: "wait"; reason: string };

export type HandlerContext = { s: Services; env: Env; db: Db; now: number; eventId: string };
export type Handler = (ctx: HandlerContext, object: Record<string, unknown>) => Promise<Decision>;

export const settle = (status: EventStatus, note: string | null = null, statements: BatchItem<"sqlite">[] = [], audit: AuditEntry[] = []): Commit => ({
  kind: "commit",
  status,
  note,
  statements,
  audit,
});
export const wait = (reason: string): Decision => ({ kind: "wait", reason });
