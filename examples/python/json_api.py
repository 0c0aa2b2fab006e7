"""json-api: POST a JSON object {"name": string, "numbers": [number, ...]} and get back
{"greeting": "hello, NAME", "sum": S, "count": N}. A body that is not JSON, or not such an
object, gets 400 with {"error": "..."}. The same API as examples/js/json-api.js."""

import json

from wedge_http import Handler, Request, Response


def reply(status: int, value) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    return Response(status, {"content-type": "application/json"}, body)


class IncomingHandler(Handler):
    def respond(self, request: Request) -> Response:
        if request.method != "POST":
            return reply(405, {"error": "use POST with a JSON body"})
        try:
            data = json.loads(request.body)
        except ValueError as error:
            return reply(400, {"error": f"invalid JSON: {error}"})
        if not isinstance(data, dict):
            return reply(400, {"error": "the body must be a JSON object"})
        name = data.get("name") if isinstance(data.get("name"), str) else "world"
        numbers = data.get("numbers", [])
        if not isinstance(numbers, list) or not all(
            isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers
        ):
            return reply(400, {"error": "numbers must be an array of numbers"})
        return reply(200, {"greeting": f"hello, {name}", "sum": sum(numbers), "count": len(numbers)})
