// echo: answers with what it received: method, path, query, headers (sorted by name, lower
// case) and body, one per line. The same format as examples/python/echo.py.
addEventListener("fetch", (event) => event.respondWith(echo(event.request)));

async function echo(request) {
  const url = new URL(request.url);
  const lines = [
    `method: ${request.method}`,
    `path: ${url.pathname}`,
    `query: ${url.search.replace(/^\?/, "")}`,
  ];
  const headers = [...request.headers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, value] of headers) {
    lines.push(`header ${name}: ${value}`);
  }
  lines.push(`body: ${await request.text()}`);
  return new Response(lines.join("\n") + "\n", { headers: { "content-type": "text/plain" } });
}
