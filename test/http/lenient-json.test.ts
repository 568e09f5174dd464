import { describe, expect, it } from "vitest";
import { api } from "../helpers";

// A route that declares a JSON body reads it as JSON whatever curl sends (declaredJsonBody), and refuses real other types.
describe("a declared JSON body", () => {
  const cleanup = (rawBody: string | undefined, contentType?: string) =>
    api("POST", "/admin/webhooks/cleanup", { ...(rawBody === undefined ? {} : { rawBody }), headers: contentType ? { "content-type": contentType } : {} });

  it("is read as JSON when sent as curl -d sends it, as text/plain, or with no type; an empty body is {}", async () => {
    expect((await cleanup('{"olderThanDays": 7}', "application/x-www-form-urlencoded")).body.olderThanDays).toBe(7);
    expect((await cleanup('{"olderThanDays": 8}', "text/plain")).body.olderThanDays).toBe(8);
    expect((await cleanup('{"olderThanDays": 9}')).body.olderThanDays).toBe(9);
    const empty = await cleanup(undefined);
    expect(empty.status).toBe(200);
    expect(empty.body.olderThanDays).toBe(30);
  });

  it("is still validated (400 naming the field) and refused as multipart (415), as the document says", async () => {
    const bad = await cleanup('{"olderThanDays": 0}', "application/x-www-form-urlencoded");
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].path).toBe("olderThanDays");
    const multipart = await cleanup("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--\r\n", "multipart/form-data; boundary=x");
    expect(multipart.status).toBe(415);
    expect(multipart.headers.get("content-type")).toBe("application/problem+json");
    const doc = (await api("GET", "/openapi.json")).body;
    expect(Object.keys(doc.paths["/admin/webhooks/cleanup"].post.responses)).toEqual(expect.arrayContaining(["400", "413", "415"]));
  });
});
