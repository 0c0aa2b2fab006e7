"""hello: the smallest Python function (see docs/languages.md)."""

from wedge_http import Handler, Request, Response


class IncomingHandler(Handler):
    def respond(self, request: Request) -> Response:
        return Response(200, {"content-type": "text/plain"}, b"hello from python\n")
