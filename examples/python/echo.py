"""echo: answers with what it received: method, path, query, headers (sorted by name, lower
case) and body, one per line. The same format as examples/js/echo.js."""

from wedge_http import Handler, Request, Response


class IncomingHandler(Handler):
    def respond(self, request: Request) -> Response:
        lines = [
            f"method: {request.method}",
            f"path: {request.path}",
            f"query: {request.query}",
        ]
        for name, value in sorted((k.lower(), v) for k, v in request.headers):
            lines.append(f"header {name}: {value}")
        lines.append("body: " + request.body.decode("utf-8", "replace"))
        return Response(200, {"content-type": "text/plain"}, ("\n".join(lines) + "\n").encode())
