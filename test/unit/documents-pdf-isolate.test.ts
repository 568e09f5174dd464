import { afterEach, describe, expect, it, vi } from "vitest";

// One Worker isolate serves many requests at once, and workerd drops a request's pending timers when the request
// ends. @pdf-lib/fontkit bundles a browser `process.nextTick` shim whose queue is module state, drained by one
// setTimeout: font subsetting deferred its work through it, so a drain timer dropped with its request left the queue
// stuck and every later render in that isolate hung ("the Workers runtime canceled this request because it detected
// that your Worker's code had hung"). Here a setTimeout that drops the shim's drain timers plays the ended request.

const realSetTimeout = globalThis.setTimeout;
afterEach(() => {
  globalThis.setTimeout = realSetTimeout;
  vi.resetModules();
});

const model = (n: number) => ({
  title: "Invoice",
  number: `INV-2026-${String(n).padStart(6, "0")}`,
  seller: { name: "Billing Engine Ltd", lines: ["1 Main St"] },
  buyer: { name: "Initech LLC", lines: [] },
  facts: [["Issued", "2026-11-30"]] as [string, string][],
  lines: [{ description: "Seats", details: [], quantity: "2", unitPrice: "50.00", amount: "100.00" }],
  totals: [{ label: "Total", value: "$100.00", strong: true }],
  notes: [],
  mark: null,
});

describe("PDF rendering in a shared isolate", () => {
  it("never waits on deferred work another request scheduled: renders complete when that request's timers are dropped", async () => {
    let dropped = 0;
    globalThis.setTimeout = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      if (fn.name === "drainQueue") {
        dropped++;
        return 0; // the request that scheduled it has ended: workerd never runs it
      }
      return realSetTimeout(fn, ms, ...args);
    }) as typeof setTimeout;
    vi.resetModules(); // fontkit captures setTimeout when it loads
    const { renderPdf } = await import("../../src/modules/documents/pdf");

    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise<"hung">((resolve) => (timer = realSetTimeout(() => resolve("hung"), 4_000)));
    const renders = Promise.all([1, 2, 3].map((n) => renderPdf(model(n) as never)));
    const outcome = await Promise.race([renders, hung]);
    clearTimeout(timer);
    expect(outcome).not.toBe("hung");
    const pdfs = outcome as Uint8Array[];
    for (const pdf of pdfs) expect(new TextDecoder("latin1").decode(pdf.subarray(0, 5))).toBe("%PDF-");
    expect(dropped).toBe(0);
  }, 15_000);
});
