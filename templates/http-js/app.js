// A wedge function in JavaScript: a fetch-event handler, as in the web's Service Workers.
// componentize-js runs it on StarlingMonkey (SpiderMonkey), which turns the component's
// wasi:http/incoming-handler export into `fetch` events: `event.request` is a web `Request`,
// `event.respondWith` takes a `Response` (or a promise of one), and the global `fetch()` makes
// outbound requests (only to the manifest's `allowed_outbound_hosts`).
//
// Build: `wedge build` (it runs the `build` command of wedge.toml). Serve: `wedge serve`.

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  if (url.searchParams.has("name")) {
    return new Response(`hello, ${url.searchParams.get("name")}\n`, {
      headers: { "content-type": "text/plain" },
    });
  }
  return new Response("hello from javascript\n", {
    headers: { "content-type": "text/plain" },
  });
}
