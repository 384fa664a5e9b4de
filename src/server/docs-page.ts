import type { RouteSpec } from "./route.js";

const escape = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );

/**
 * A self-contained HTML reference of the API (no scripts, no external assets: the server may
 * run where nothing else is reachable), generated from the same route table as the OpenAPI document.
 */
export function renderDocsPage(routes: RouteSpec[], openapi: Record<string, unknown>): string {
  const paths = openapi.paths as Record<
    string,
    Record<
      string,
      { parameters?: Array<{ name: string; in: string; description?: string }>; requestBody?: unknown }
    >
  >;
  const byTag = new Map<string, RouteSpec[]>();
  for (const route of routes) byTag.set(route.tag, [...(byTag.get(route.tag) ?? []), route]);
  const sections = [...byTag.entries()].map(([tag, list]) => {
    const items = list.map((route) => {
      const operation = paths[route.url]?.[route.method.toLowerCase()];
      const params = (operation?.parameters ?? [])
        .map(
          (p) =>
            `<li><code>${escape(p.name)}</code> (${p.in})${p.description ? ` — ${escape(p.description)}` : ""}</li>`,
        )
        .join("");
      const body = route.body
        ? `<details><summary>request body</summary><pre>${escape(JSON.stringify(operation?.requestBody, null, 2))}</pre></details>`
        : "";
      const statuses = Object.keys(route.responses).join(", ");
      return `<section id="${escape(`${route.method}-${route.url}`)}">
<h3><span class="m ${route.method.toLowerCase()}">${route.method}</span> <code>${escape(route.url)}</code></h3>
<p>${escape(route.summary)}${route.auth === false ? " <em>(no token needed)</em>" : ""}</p>
${route.description ? `<p>${escape(route.description)}</p>` : ""}
${route.sse ? `<p>With <code>Accept: text/event-stream</code>: ${escape(route.sse)}</p>` : ""}
${params ? `<ul>${params}</ul>` : ""}${body}
<p class="s">responds ${escape(statuses)}</p>
${route.example ? `<pre>${escape(route.example)}</pre>` : ""}
</section>`;
    });
    return `<h2>${escape(tag)}</h2>\n${items.join("\n")}`;
  });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>runcell API reference</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
code,pre{font-family:ui-monospace,monospace;font-size:13px}pre{background:#f4f5f7;padding:.6rem;overflow:auto;border-radius:4px}
h3{margin-bottom:.2rem}.m{display:inline-block;min-width:4.2rem;font-size:12px;padding:1px 6px;border-radius:3px;color:#fff;text-align:center}
.get{background:#2f6fb3}.post{background:#2e8b57}.delete{background:#b33a3a}.patch,.put{background:#a0701b}.s{color:#57606a;font-size:13px}
</style></head><body>
<h1>runcell API reference</h1>
<p>Every route but those marked takes <code>Authorization: Bearer &lt;token&gt;</code>. Errors are
<code>{"error": {"code", "message"}}</code>. Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).</p>
${sections.join("\n")}
</body></html>
`;
}
