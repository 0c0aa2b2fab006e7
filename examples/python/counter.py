"""counter: a per-user counter on wedge's key-value capability (wasi:keyvalue), the same API as
examples/js/counter.js. The function needs `key_value_stores = ["default"]` in its config; the
store is an embedded SQLite file unless the runtime config moves `default` to Redis
(examples/app/runtime-servers.toml): this code is the same on both.

  POST   .../counter/USER   adds 1 (atomics.increment) -> {"user", "count", "last_seen"}
  GET    .../counter/USER   the count (0 if none) and when it last went up (null if never)
  DELETE .../counter/USER   resets it -> {"user", "count": 0, "last_seen": null}
  GET    .../counter        {"users": [...]}: every user with a count (list-keys, all pages)
  anything else on those    405

Keys: `count:USER` holds the count (a decimal number, as increment keeps it) and `seen:USER`
the time of the last increment (set/get: plain bytes, here UTF-8 text). The function sees the
full path (its route included), so it routes on the last segments.

Errors: the store down or too slow -> 503 {"error": "key-value store unavailable: ..."};
not granted -> 500 saying what to grant; anything else -> 500. wedge_state.py
(templates/http-py) wraps wasi:keyvalue: Python values in and out, KvError on failure.
"""

import json
import re
from datetime import datetime, timezone
from urllib.parse import unquote

from wedge_http import Handler, Request, Response
from wedge_state import Bucket, KvError, kv_open

STORE = "default"
MAX_USER = 128


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def reply(status: int, value) -> Response:
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, {"content-type": "application/json"}, body)


def error(status: int, message: str) -> Response:
    return reply(status, {"error": message})


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_path(path: str):
    """".../counter" -> (True, None); ".../counter/USER" -> (True, "USER"); else (False, None)."""
    segments = [s for s in path.split("/") if s]
    if len(segments) >= 2 and segments[-2] == "counter":
        raw = segments[-1]
        try:
            if _BAD_ESCAPE.search(raw):
                raise ValueError
            user = unquote(raw, errors="strict")
        except ValueError:
            raise HttpError(400, "the user in the path is not valid percent-encoding")
        if len(user) > MAX_USER:
            raise HttpError(400, f"a user name has at most {MAX_USER} characters")
        return True, user
    if segments and segments[-1] == "counter":
        return True, None
    return False, None


def now() -> str:
    """Like JavaScript's toISOString(): 2026-11-23T20:06:01.618Z."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def route(request: Request, bucket: Bucket) -> Response:
    found, user = parse_path(request.path)
    if not found:
        return error(404, "not found: use .../counter or .../counter/USER")
    method = request.method
    if user is None:
        if method != "GET":
            return error(405, "use GET on .../counter")
        # keys() walks every page of list-keys (cursor by cursor). Only the `count:` keys are
        # users; the store may hold other functions' keys too.
        users = sorted(key.removeprefix("count:") for key in bucket.keys("count:"))
        return reply(200, {"users": users})
    if method == "POST":
        count = bucket.increment(f"count:{user}", 1)  # atomic on every backend
        seen = now()
        bucket.set(f"seen:{user}", seen)
        return reply(200, {"user": user, "count": count, "last_seen": seen})
    if method == "GET":
        count = bucket.get(f"count:{user}")  # b"2" (increment keeps a decimal number), or None
        seen = bucket.get_text(f"seen:{user}")  # get() decoded from UTF-8, or None
        return reply(200, {"user": user, "count": int(count) if count is not None else 0, "last_seen": seen})
    if method == "DELETE":
        bucket.delete(f"count:{user}")  # deleting a key that is not there is no error
        bucket.delete(f"seen:{user}")
        return reply(200, {"user": user, "count": 0, "last_seen": None})
    return error(405, "use GET, POST or DELETE on .../counter/USER")


def store_error(err: KvError) -> Response:
    if err.kind in ("access-denied", "no-such-store"):
        return error(
            500,
            f"key-value store `{STORE}` not available to this function ({err.kind}): its config must"
            f' grant it (key_value_stores = ["{STORE}"])',
        )
    if err.unavailable:
        return error(503, f"key-value store unavailable: {err.message}")
    return error(500, f"key-value error: {err.message}")


class IncomingHandler(Handler):
    def respond(self, request: Request) -> Response:
        try:
            with kv_open(STORE) as bucket:
                return route(request, bucket)
        except HttpError as err:
            return error(err.status, err.message)
        except KvError as err:
            return store_error(err)
