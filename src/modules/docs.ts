import { Hono } from "hono";
import type { HonoEnv } from "../env";

// A self-contained API reference rendered from /openapi.json in the browser: no CDN, works offline.
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Billing Engine API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.5 system-ui,sans-serif;margin:0;color:#1d2330}header{background:#14213d;color:#fff;padding:16px 24px}
main{max-width:1100px;margin:0 auto;padding:16px 24px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
details{border:1px solid #e3e6ec;border-radius:6px;margin:8px 0;background:#fafbfc}summary{cursor:pointer;padding:8px 12px;font-family:ui-monospace,monospace}
.m{display:inline-block;min-width:64px;font-weight:700}.get{color:#0a7}.post{color:#06c}.put,.patch{color:#b60}.delete{color:#c22}
pre{background:#fff;border:1px solid #eee;padding:8px;overflow:auto;font-size:12px;margin:4px 12px 12px}p{margin:4px 12px}
</style></head><body><header><h1 style="margin:0;font-size:20px">Billing Engine API</h1><div id="v"></div></header><main id="root">Loading /openapi.json…</main>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const esc=s=>String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
  document.getElementById('v').textContent=doc.info.title+' '+doc.info.version+' · OpenAPI '+doc.openapi;
  const byTag={};
  for(const [path,ops] of Object.entries(doc.paths||{}))for(const [m,op] of Object.entries(ops)){const t=(op.tags||['Other'])[0];(byTag[t]=byTag[t]||[]).push({path,m,op});}
  let html='';
  for(const [tag,list] of Object.entries(byTag)){html+='<h2>'+esc(tag)+'</h2>';
    for(const {path,m,op} of list){html+='<details><summary><span class="m '+m+'">'+m.toUpperCase()+'</span>'+esc(path)+' — '+esc(op.summary||'')+'</summary>';
      if(op.parameters&&op.parameters.length)html+='<p><b>Parameters</b></p><pre>'+esc(JSON.stringify(op.parameters.map(p=>({name:p.name,in:p.in,required:!!p.required,schema:p.schema})),null,2))+'</pre>';
      const body=op.requestBody&&op.requestBody.content&&op.requestBody.content['application/json'];
      if(body)html+='<p><b>Body</b></p><pre>'+esc(JSON.stringify(body.schema,null,2))+'</pre>';
      html+='<p><b>Responses</b>: '+esc(Object.keys(op.responses||{}).join(', '))+'</p></details>';}}
  html+='<h2>Schemas</h2><pre>'+esc(JSON.stringify((doc.components||{}).schemas||{},null,2))+'</pre>';
  document.getElementById('root').innerHTML=html;
}).catch(e=>{document.getElementById('root').textContent='Could not load /openapi.json: '+e});
</script></body></html>`;

export const docsRoutes = new Hono<HonoEnv>().get("/", (c) => c.html(page));
