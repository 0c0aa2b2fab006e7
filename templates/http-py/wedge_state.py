"""Pythonic wrappers over wedge's state capabilities, for wedge functions written in Python.

componentize-py exposes the raw imports (`wit_world.imports.store`, `.atomics`, `.batch`,
`.sql`): every call raises `componentize_py_types.Err(variant)` on failure, and SQL values are
variants (`sql.Value_Text("x")`). This module keeps the same operations with plain Python
values and exceptions:

    from wedge_state import kv_open, sql_open, KvError, SqlError

    bucket = kv_open("default")               # the config must grant it: key_value_stores
    bucket.set("greeting", "hi")              # str (stored as UTF-8) or bytes
    bucket.get("greeting")                    # b"hi", or None
    bucket.increment("visits")                # atomic; returns the new count
    for key in bucket.keys("user:"): ...      # every key with that prefix, all pages

    db = sql_open("orders")                   # the config must grant it: sql_databases
    result = db.execute("SELECT id, total FROM orders WHERE id = ?", order_id)
    result.rows                               # [("o-1", 19.5)]: tuples of None/int/float/str/bytes
    with db.transaction():                    # commit at the end, rollback on an exception
        db.execute("UPDATE orders SET total = ? WHERE id = ?", 20.0, order_id)

Failures raise `KvError` / `SqlError`: `.kind` is the WIT case name ("access-denied",
"unavailable", "constraint-violation", ...), `.message` its text, `.error` the raw variant.
Every `?` is bound by the database to the next parameter: pass user data as parameters, never
by formatting it into the statement (that is how SQL injection is avoided).
See docs/capabilities.md.
"""

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import atomics, sql, store

__all__ = ["kv_open", "sql_open", "Bucket", "Database", "Result", "KvError", "SqlError"]


def _kind(error) -> str:
    """The WIT case name of an error variant: Error_AccessDenied -> "access-denied"."""
    name = type(error).__name__.removeprefix("Error_")
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


class _StateError(Exception):
    def __init__(self, error):
        self.error = error
        self.kind = _kind(error)
        self.message = getattr(error, "value", "") or ""
        super().__init__(f"{self.kind}: {self.message}" if self.message else self.kind)


class KvError(_StateError):
    """A wasi:keyvalue call failed. kind: "no-such-store", "access-denied" or "other"."""

    @property
    def unavailable(self) -> bool:
        """The store is down or did not answer in time (wedge reports that as `other`,
        "key-value store `NAME` is unavailable: ..."); a later call may succeed."""
        return self.kind == "other" and " is unavailable" in self.message


class SqlError(_StateError):
    """A wedge:sql call failed. kind: "access-denied", "unavailable", "constraint-violation",
    "invalid-statement", "limit-exceeded", "no-transaction" or "other"."""


def _kv(call, *args):
    try:
        return call(*args)
    except Err as error:
        raise KvError(error.value) from None


def _sql(call, *args):
    try:
        return call(*args)
    except Err as error:
        raise SqlError(error.value) from None


# --- key-value ------------------------------------------------------------------------------


class Bucket:
    """A key-value store (wasi:keyvalue bucket). Keys are strings, values bytes; a str value is
    stored as UTF-8."""

    def __init__(self, raw: store.Bucket):
        self.raw = raw

    def get(self, key: str) -> Optional[bytes]:
        return _kv(self.raw.get, key)

    def get_text(self, key: str) -> Optional[str]:
        value = self.get(key)
        return None if value is None else value.decode()

    def set(self, key: str, value: Union[bytes, str]) -> None:
        _kv(self.raw.set, key, value.encode() if isinstance(value, str) else bytes(value))

    def delete(self, key: str) -> None:
        """Deleting a key that is not there is not an error."""
        _kv(self.raw.delete, key)

    def exists(self, key: str) -> bool:
        return _kv(self.raw.exists, key)

    def increment(self, key: str, delta: int = 1) -> int:
        """Atomically adds `delta` (>= 0) and returns the new value; a missing key counts from
        0. The value is kept as a decimal number in text (get() returns b"42")."""
        return _kv(atomics.increment, self.raw, key, delta)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key (starting with `prefix`), fetching the pages of list-keys as it goes."""
        cursor = None
        while True:
            page = _kv(self.raw.list_keys, cursor)
            for key in page.keys:
                if key.startswith(prefix):
                    yield key
            if page.cursor is None:
                return
            cursor = page.cursor

    def close(self) -> None:
        self.raw.__exit__(None, None, None)

    def __enter__(self) -> "Bucket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def kv_open(name: str) -> Bucket:
    """Opens the key-value store `name`, which the function's config must grant
    (key_value_stores); else KvError("access-denied")."""
    return Bucket(_kv(store.open, name))


# --- SQL --------------------------------------------------------------------------------------

Param = Union[None, bool, int, float, str, bytes, bytearray, memoryview]
Cell = Union[None, int, float, str, bytes]

_S64 = range(-(2**63), 2**63)


def to_value(param: Param) -> sql.Value:
    """A Python value as a wedge:sql value: None, int (and bool), float, str, bytes."""
    if param is None:
        return sql.Value_Null()
    if isinstance(param, bool):
        return sql.Value_Integer(int(param))
    if isinstance(param, int):
        if param not in _S64:
            raise ValueError(f"integer parameter {param} does not fit 64 bits")
        return sql.Value_Integer(param)
    if isinstance(param, float):
        return sql.Value_Real(param)
    if isinstance(param, str):
        return sql.Value_Text(param)
    if isinstance(param, (bytes, bytearray, memoryview)):
        return sql.Value_Blob(bytes(param))
    raise TypeError(f"cannot pass a {type(param).__name__} as an SQL parameter")


def from_value(value: sql.Value) -> Cell:
    """A wedge:sql value as a Python value (null -> None)."""
    return None if isinstance(value, sql.Value_Null) else value.value


@dataclass
class Result:
    columns: List[str]
    rows: List[Tuple[Cell, ...]]
    rows_affected: int
    last_insert_id: Optional[int]

    def dicts(self) -> List[dict]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row)) for row in self.rows]


class Database:
    """A connection to an SQL database (wedge:sql connection)."""

    def __init__(self, raw: sql.Connection):
        self.raw = raw

    def execute(self, statement: str, *params: Param) -> Result:
        """Runs one statement; each `?` is bound to the next of `params` by the database."""
        result = _sql(self.raw.execute, statement, [to_value(p) for p in params])
        return Result(
            columns=list(result.columns),
            rows=[tuple(from_value(v) for v in row.values) for row in result.rows],
            rows_affected=result.rows_affected,
            last_insert_id=result.last_insert_id,
        )

    def begin(self) -> None:
        _sql(self.raw.begin)

    def commit(self) -> None:
        _sql(self.raw.commit)

    def rollback(self) -> None:
        _sql(self.raw.rollback)

    @contextmanager
    def transaction(self):
        """`with db.transaction():` begins; commits when the block ends, rolls back when it
        raises (the exception goes on)."""
        self.begin()
        try:
            yield self
        except BaseException:
            try:
                self.rollback()
            except SqlError:
                pass  # already rolled back by the host (e.g. the server went away)
            raise
        self.commit()

    def close(self) -> None:
        """Drops the connection (an open transaction is rolled back)."""
        self.raw.__exit__(None, None, None)

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sql_open(name: str) -> Database:
    """Opens the SQL database `name`, which the function's config must grant (sql_databases);
    else SqlError("access-denied")."""
    return Database(_sql(sql.Connection.open, name))
