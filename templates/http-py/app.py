"""A wedge function in Python.

componentize-py builds this module into a wasi:http/incoming-handler component: it looks for
the class `IncomingHandler`. `wedge_http.Handler` reads the request whole into a `Request`
(method, path, query, headers, body) and sends the `Response` that `respond` returns;
`wedge_http.fetch(url)` makes outbound requests (only to the manifest's allowed_outbound_hosts).

Build: `wedge build` (it runs the `build` command of wedge.toml). Serve: `wedge serve`.
"""

from urllib.parse import parse_qs

from wedge_http import Handler, Request, Response


class IncomingHandler(Handler):
    def respond(self, request: Request) -> Response:
        name = parse_qs(request.query).get("name")
        text = f"hello, {name[0]}\n" if name else "hello from python\n"
        return Response(200, {"content-type": "text/plain"}, text.encode())
