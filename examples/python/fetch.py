"""fetch: GET ?url=URL makes an outbound request (wasi:http/outgoing-handler, through
wedge_http.fetch) and answers "status: CODE" and the upstream body. wedge allows only the
function's allowed_outbound_hosts; any other destination fails, and this answers 502 with the
reason (e.g. HttpRequestDenied)."""

from urllib.parse import parse_qs

from wedge_http import FetchError, Handler, Request, Response, fetch


class IncomingHandler(Handler):
    def respond(self, request: Request) -> Response:
        target = parse_qs(request.query).get("url")
        if not target:
            return Response(400, {}, b"bad request: give ?url=URL\n")
        try:
            upstream = fetch(target[0])
        except FetchError as error:
            return Response(502, {}, f"fetch failed: {error}\n".encode())
        body = f"status: {upstream.status}\n".encode() + upstream.body
        return Response(200, {"content-type": "text/plain"}, body)
