// fetch: GET ?url=URL makes an outbound request with the web `fetch()` and answers
// "status: CODE" and the upstream body. wedge allows only the function's
// allowed_outbound_hosts; any other destination fails, and this answers 502 with the reason.
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const target = new URL(request.url).searchParams.get("url");
  if (!target) {
    return new Response("bad request: give ?url=URL\n", { status: 400 });
  }
  try {
    const upstream = await fetch(target);
    const body = await upstream.text();
    return new Response(`status: ${upstream.status}\n${body}`, {
      headers: { "content-type": "text/plain" },
    });
  } catch (error) {
    return new Response(`fetch failed: ${error.message}\n`, { status: 502 });
  }
}
