// hello: the smallest JavaScript function (a fetch-event handler; see docs/languages.md).
addEventListener("fetch", (event) =>
  event.respondWith(
    new Response("hello from javascript\n", { headers: { "content-type": "text/plain" } }),
  ),
);
