// /docs: the reference page the Worker serves (the browser-side rendering is checked by npm run test:e2e:docs).
import { describe, expect, it } from "vitest";
import { api } from "../helpers";

const sha256 = async (text: string) => btoa(String.fromCharCode(...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)))));

describe("/docs", () => {
  it("loads Scalar and its fonts from this Worker's assets, and nothing from elsewhere", async () => {
    const r = await api("GET", "/docs", { as: null });
    expect(r.status).toBe(200);
    const html = r.body as string;
    expect(html).toContain('<script src="/docs/assets/scalar.js"></script>');
    expect(html).toMatch(/url\(\/docs\/assets\/fonts\/inter-latin-wght-normal\.woff2\)/);
    expect(html).not.toMatch(/(?:src|href)=["'](?:https?:)?\/\//);
    const config = JSON.parse(/<script id="api-reference-config" type="application\/json">([^<]*)<\/script>/.exec(html)![1]!);
    // Scalar's own network features stay off: telemetry, its hosted fonts, the AI agent, a request proxy.
    expect(config).toMatchObject({ url: "/openapi.json", telemetry: false, withDefaultFonts: false, agent: { disabled: true } });
    expect(config.proxyUrl).toBeUndefined();
  });

  it("holds the page to its origin with a Content-Security-Policy that still lets its own start-up script run", async () => {
    const r = await api("GET", "/docs", { as: null });
    const csp = r.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toMatch(/https?:|\*/);
    const inline = [...(r.body as string).matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
    expect(inline).toHaveLength(1);
    expect(csp).toContain(`'sha256-${await sha256(inline[0]!)}'`);
  });
});
