"""orders: the classic orders microservice on wedge's SQL capability (wedge:sql), the same API as
examples/js/orders.js. The function needs `sql_databases = ["orders"]` in its config; the
database is an embedded SQLite file unless the runtime config moves `orders` to MySQL/MariaDB
(examples/app/runtime-servers.toml): this code is the same on both.

  POST   .../orders        a JSON order -> 201 and the stored order; 400 naming the bad field;
                           409 if its order_id exists
  GET    .../orders        200, a JSON list of every order
  GET    .../orders/ID     200 and the order, or 404
  PUT    .../orders/ID     a whole order (its order_id, if given, must be ID) -> 200, 404, 400
  DELETE .../orders/ID     204, or 404
  anything else on those   405

An order: {"order_id": string, "product_id": string, "quantity": integer >= 1,
           "amount": number >= 0, "shipping": number >= 0, "tax": number >= 0,
           "shipping_address": string}

The function sees the full path (its route included), so it routes on the path's last
segments: ".../orders" is the collection and ".../orders/ID" one order, whatever the route.

Database errors: `unavailable` (server down, timed out) -> 503 {"error": "database
unavailable: ..."}; `access-denied` (the config does not grant `orders`) and anything else
-> 500. wedge_state.py (templates/http-py) wraps wedge:sql: plain Python values in and out,
SqlError on failure.
"""

import json
import math
import re
from urllib.parse import unquote

from wedge_http import Handler, Request, Response
from wedge_state import Database, SqlError, sql_open

DATABASE = "orders"

# SQL that both the embedded SQLite and MySQL/MariaDB accept. Every request runs in a fresh
# instance, so there is no "already created" flag to keep: IF NOT EXISTS makes it cheap.
CREATE_TABLE = """CREATE TABLE IF NOT EXISTS orders (
  order_id VARCHAR(64) PRIMARY KEY,
  product_id VARCHAR(64) NOT NULL,
  quantity INTEGER NOT NULL,
  amount DOUBLE NOT NULL,
  shipping DOUBLE NOT NULL,
  tax DOUBLE NOT NULL,
  shipping_address TEXT NOT NULL
)"""

FIELDS = ("order_id", "product_id", "quantity", "amount", "shipping", "tax", "shipping_address")
COLUMNS = ", ".join(FIELDS)

# SQL INJECTION: every value that comes from the request (the id in the path, every field of
# the body) is passed as a parameter and bound to a `?` by the database itself, so it is always
# data, never SQL. Never build a statement with f-strings, % or +:
#   db.execute(f"SELECT ... WHERE order_id = '{order_id}'")   # WRONG: the id can end the string
#   db.execute("SELECT ... WHERE order_id = ?", order_id)     # right, whatever the id contains
# The statements below are constants (COLUMNS is ours, not the user's); only the parameters vary.

MAX_ID = 64  # VARCHAR(64)
MAX_QUANTITY = 2147483647  # INTEGER is 32-bit on MySQL


class HttpError(Exception):
    """Answer `status` with {"error": message} (and roll back an open transaction)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def reply(status: int, value) -> Response:
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, {"content-type": "application/json"}, body)


def error(status: int, message: str) -> Response:
    return reply(status, {"error": message})


def validate_order(data) -> dict:
    """Checks a parsed JSON body field by field; raises HttpError(400) naming the first bad one.
    Money fields become floats (they are DOUBLE columns, and come back as floats)."""
    if not isinstance(data, dict):
        raise HttpError(400, "the body must be a JSON object (an order)")

    def field(name):
        if data.get(name) is None:
            raise HttpError(400, f"missing field: {name}")
        return data[name]

    def ident(name):
        value = field(name)
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID:
            raise HttpError(400, f"{name} must be a string of 1 to {MAX_ID} characters")
        return value

    def money(name):
        value = field(name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value < 0:
            raise HttpError(400, f"{name} must be a number >= 0")
        return float(value)

    order = {"order_id": ident("order_id"), "product_id": ident("product_id")}
    quantity = field("quantity")
    if isinstance(quantity, float) and quantity.is_integer():
        quantity = int(quantity)  # 2.0 is 2, as in JavaScript
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise HttpError(400, f"quantity must be an integer from 1 to {MAX_QUANTITY}")
    order["quantity"] = quantity
    order["amount"] = money("amount")
    order["shipping"] = money("shipping")
    order["tax"] = money("tax")
    address = field("shipping_address")
    if not isinstance(address, str):
        raise HttpError(400, "shipping_address must be a string")
    order["shipping_address"] = address
    return order


def parse_json(body: bytes):
    try:
        return json.loads(body)
    except ValueError as err:  # also a body that is not UTF-8
        raise HttpError(400, f"invalid JSON: {err}")


def order_params(order: dict) -> tuple:
    """An order as statement parameters, in the order of COLUMNS."""
    return tuple(order[name] for name in FIELDS)


def row_to_order(row: tuple) -> dict:
    order = dict(zip(FIELDS, row))
    for name in ("amount", "shipping", "tax"):
        order[name] = float(order[name])  # a backend may hand back 4 for 4.0
    return order


def find_order(db: Database, order_id: str):
    result = db.execute(f"SELECT {COLUMNS} FROM orders WHERE order_id = ?", order_id)
    return row_to_order(result.rows[0]) if result.rows else None


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_path(path: str):
    """".../orders" -> (True, None); ".../orders/ID" -> (True, "ID") (percent-decoded);
    anything else -> (False, None)."""
    segments = [s for s in path.split("/") if s]
    if len(segments) >= 2 and segments[-2] == "orders":
        raw = segments[-1]
        try:
            if _BAD_ESCAPE.search(raw):
                raise ValueError
            return True, unquote(raw, errors="strict")
        except ValueError:  # UnicodeDecodeError is one
            raise HttpError(400, "the order id in the path is not valid percent-encoding")
    if segments and segments[-1] == "orders":
        return True, None
    return False, None


def route(request: Request, db: Database) -> Response:
    found, order_id = parse_path(request.path)
    if not found:
        return error(404, "not found: use .../orders or .../orders/ID")
    method = request.method

    if order_id is None:
        if method == "GET":
            result = db.execute(f"SELECT {COLUMNS} FROM orders ORDER BY order_id")
            return reply(200, [row_to_order(row) for row in result.rows])
        if method == "POST":
            order = validate_order(parse_json(request.body))
            try:
                db.execute(
                    f"INSERT INTO orders ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", *order_params(order)
                )
            except SqlError as err:
                # The primary key says the id is taken; no need to look first (and no race).
                if err.kind == "constraint-violation":
                    return error(409, f"order {order['order_id']} already exists")
                raise
            return reply(201, order)
        return error(405, "use GET or POST on .../orders")

    if method == "GET":
        order = find_order(db, order_id)
        return reply(200, order) if order else error(404, f"no order {order_id}")
    if method == "PUT":
        data = parse_json(request.body)
        if isinstance(data, dict):
            if data.get("order_id") is None:
                data["order_id"] = order_id
            elif data["order_id"] != order_id:
                raise HttpError(
                    400, f"order_id in the body ({data['order_id']}) is not the one in the path ({order_id})"
                )
        order = validate_order(data)
        # A transaction, so the check and the update see the same row (an exception, the 404
        # included, rolls it back). Checking first also keeps PUT portable: MySQL counts an
        # UPDATE that changes nothing as 0 rows affected.
        with db.transaction():
            if find_order(db, order_id) is None:
                raise HttpError(404, f"no order {order_id}")
            db.execute(
                "UPDATE orders SET product_id = ?, quantity = ?, amount = ?, shipping = ?, tax = ?,"
                " shipping_address = ? WHERE order_id = ?",
                *order_params(order)[1:],
                order_id,
            )
        return reply(200, order)
    if method == "DELETE":
        result = db.execute("DELETE FROM orders WHERE order_id = ?", order_id)
        if result.rows_affected == 0:
            return error(404, f"no order {order_id}")
        return Response(204, {}, b"")
    return error(405, "use GET, PUT or DELETE on .../orders/ID")


def database_error(err: SqlError) -> Response:
    if err.kind == "unavailable":
        return error(503, f"database unavailable: {err.message}")
    if err.kind == "access-denied":
        return error(
            500,
            f"access to the SQL database `{DATABASE}` denied: the function's config must grant it"
            f' (sql_databases = ["{DATABASE}"])',
        )
    return error(500, f"database error ({err.kind})" + (f": {err.message}" if err.message else ""))


class IncomingHandler(Handler):
    def respond(self, request: Request) -> Response:
        try:
            with sql_open(DATABASE) as db:
                db.execute(CREATE_TABLE)
                return route(request, db)
        except HttpError as err:
            return error(err.status, err.message)
        except SqlError as err:
            return database_error(err)
