"""A small synchronous layer over wasi:http for wedge functions written in Python.

componentize-py exposes the raw WASI 0.2 types (`wit_world.imports.types`); this module turns an
incoming request into a `Request` (method, path, query, headers, body read whole), sends a
`Response` back, and makes outbound requests with `fetch`. Subclass `Handler` and implement
`respond`; name the subclass `IncomingHandler` in your app module.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import outgoing_handler, streams, types

# wasi:io output streams take at most 4096 bytes per blocking write.
_WRITE_CHUNK = 4096
_READ_CHUNK = 65536


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: List[Tuple[str, str]]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


@dataclass
class Response:
    status: int = 200
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class FetchError(Exception):
    """An outbound request failed; `code` is the wasi:http error-code (e.g. HttpRequestDenied)."""

    def __init__(self, code):
        super().__init__(type(code).__name__.removeprefix("ErrorCode_"))
        self.code = code


def _method_name(method) -> str:
    if isinstance(method, types.Method_Other):
        return method.value
    return type(method).__name__.removeprefix("Method_").upper()


def _read_all(body) -> bytes:
    stream = body.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(_READ_CHUNK))
        except Err as error:
            if isinstance(error.value, streams.StreamError_Closed):
                break
            raise
    stream.__exit__(None, None, None)
    return b"".join(chunks)


def _write_all(body, data: bytes) -> None:
    stream = body.write()
    for start in range(0, len(data), _WRITE_CHUNK):
        stream.blocking_write_and_flush(data[start : start + _WRITE_CHUNK])
    stream.__exit__(None, None, None)


def fetch(url: str, method: str = "GET", headers: Optional[Dict[str, str]] = None, body: bytes = b"") -> Response:
    """An outbound HTTP request through wasi:http/outgoing-handler. The host allows only the
    function's `allowed_outbound_hosts`; anything else raises FetchError(HttpRequestDenied)."""
    parts = urlsplit(url)
    fields = types.Fields.from_list([(k, v.encode()) for k, v in (headers or {}).items()])
    request = types.OutgoingRequest(fields)
    request.set_method(getattr(types, "Method_" + method.capitalize())())
    request.set_scheme(types.Scheme_Https() if parts.scheme == "https" else types.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + ("?" + parts.query if parts.query else "") or "/")
    outgoing_body = request.body()
    if body:
        _write_all(outgoing_body, body)
    try:
        future = outgoing_handler.handle(request, None)
    except Err as error:
        raise FetchError(error.value)
    types.OutgoingBody.finish(outgoing_body, None)
    while True:
        answer = future.get()
        if answer is not None:
            break
        future.subscribe().block()
    # Ok(Ok(response)), Ok(Err(error-code)), or Err(None) when the response was taken before.
    if isinstance(answer, Err):
        raise FetchError(types.ErrorCode_InternalError("the response was already taken"))
    result = answer.value
    if isinstance(result, Err):
        raise FetchError(result.value)
    response = result.value
    reply_headers = {k: v.decode("latin-1") for k, v in response.headers().entries()}
    return Response(response.status(), reply_headers, _read_all(response.consume()))


class Handler(exports.IncomingHandler):
    """wasi:http's incoming-handler, made synchronous: implement `respond`."""

    def respond(self, request: Request) -> Response:
        raise NotImplementedError

    def handle(self, request: types.IncomingRequest, response_out: types.ResponseOutparam) -> None:
        path_with_query = request.path_with_query() or "/"
        path, _, query = path_with_query.partition("?")
        incoming = Request(
            method=_method_name(request.method()),
            path=path,
            query=query,
            headers=[(k, v.decode("latin-1")) for k, v in request.headers().entries()],
            body=_read_all(request.consume()),
        )
        try:
            answer = self.respond(incoming)
        except Exception as error:  # an uncaught error is a 500 with its message, not a trap
            answer = Response(500, {"content-type": "text/plain"}, f"internal error: {error!r}\n".encode())
        fields = types.Fields.from_list([(k, v.encode()) for k, v in answer.headers.items()])
        response = types.OutgoingResponse(fields)
        response.set_status_code(answer.status)
        body = response.body()
        types.ResponseOutparam.set(response_out, Ok(response))
        _write_all(body, answer.body)
        types.OutgoingBody.finish(body, None)
