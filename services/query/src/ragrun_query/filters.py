"""The filter language: JSON conditions over documents, compiled to parameterized SQL.

A filter is one condition, or the original shorthand object::

    {"and": [F, ...]}   {"or": [F, ...]}   {"not": F}
    {"eq" | "prefix" | "gt" | "gte" | "lt" | "lte": {"field": FIELD, "value": V}}
    {"in": {"field": FIELD, "values": [V, ...]}}
    {"bucket": str, "prefix": str, "content_type": str}   # shorthand: all given must hold

The empty condition (``{}``, or a shorthand whose values are all null) is true:
``{"not": {}}`` matches nothing. At most :data:`MAX_DEPTH` levels and
:data:`MAX_CONDITIONS` conditions; ``in`` takes at most :data:`MAX_IN_VALUES` values.

Fields (:data:`FIELDS`) name columns of ``ragrun.documents``: ``bucket``, ``name``,
``content_type`` (text), ``generation`` (the served GCS generation, an integer),
``created_at`` and ``updated_at`` (RFC 3339 times), and ``metadata.KEY`` for the
object's custom metadata, compared as text for string values and as numbers for
numeric ones (values that do not read as numbers never match a numeric test).

Parsing is pure and names the offending place (``filter.and[1].eq.field``) in
its :class:`~ragrun_query.errors.RequestError`; :func:`compile_filter` turns the
tree into SQL whose values are all bound parameters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypeAlias

from psycopg import sql
from psycopg.types.json import Jsonb

from ragrun_query.errors import RequestError

MAX_STRING_CHARS = 1024  # GCS object names are at most 1024 bytes
MAX_METADATA_KEY_CHARS = 256
MAX_IN_VALUES = 256
MAX_DEPTH = 8
MAX_CONDITIONS = 64
_INT64 = (-(2**63), 2**63 - 1)

Kind = Literal["text", "integer", "time"]
Op = Literal["eq", "in", "prefix", "gt", "gte", "lt", "lte"]

#: The document fields a filter can name, with their type.
FIELDS: dict[str, Kind] = {
    "bucket": "text",
    "name": "text",
    "content_type": "text",
    "generation": "integer",
    "created_at": "time",
    "updated_at": "time",
}
METADATA_PREFIX = "metadata."
COMPARISONS: tuple[Op, ...] = ("eq", "in", "prefix", "gt", "gte", "lt", "lte")
BOOLEANS = ("and", "or", "not")
OPERATORS = (*BOOLEANS, *COMPARISONS)
SHORTHAND_KEYS = ("bucket", "prefix", "content_type")
RANGE_OPS: tuple[Op, ...] = ("gt", "gte", "lt", "lte")

#: What an ISO 8601 / RFC 3339 time value looks like (a date alone means its midnight, UTC).
TIME_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
    r"(Z|z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?$"
)
_TIME = re.compile(TIME_PATTERN)

Scalar: TypeAlias = str | int | Decimal | datetime


@dataclass(frozen=True, slots=True)
class Compare:
    """``field OP value``; for ``in``, ``value`` is a tuple of values."""

    op: Op
    field: str
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node: TypeAlias = Compare | And | Or | Not

#: The empty condition (``{}``, or a shorthand whose values are all null): always true.
TRUE = And(())


def fields_used(node: Node | None) -> list[str]:
    """The distinct fields a filter tests, sorted (for logs: no values)."""
    return sorted({compare.field for compare in _walk(node)})


def _walk(node: Node | None) -> Iterator[Compare]:
    if node is None:
        return
    if isinstance(node, Compare):
        yield node
    elif isinstance(node, Not):
        yield from _walk(node.item)
    else:
        for item in node.items:
            yield from _walk(item)


# -- parsing -------------------------------------------------------------------


def parse_filter(value: object, *, path: str = "filter") -> Node | None:
    """Validate a decoded JSON filter; ``None`` (or an empty shorthand) means no filter."""
    if value is None:
        return None
    node = _parse_node(value, path, depth=1, counter=[0])
    return None if node == TRUE else node


def _parse_node(value: object, path: str, *, depth: int, counter: list[int]) -> Node:
    if not isinstance(value, Mapping):
        raise RequestError(path, "must be an object")
    if depth > MAX_DEPTH:
        raise RequestError(path, f"filters may nest at most {MAX_DEPTH} levels deep")
    keys = [str(key) for key in value]
    if _is_shorthand(value):
        return _shorthand(value, path, counter)
    unknown = [key for key in keys if key not in OPERATORS and key not in SHORTHAND_KEYS]
    if unknown:
        raise RequestError(
            f"{path}.{unknown[0]}",
            f"unknown operator {unknown[0]!r}; expected one of: {', '.join(OPERATORS)}"
            f" (or the shorthand keys {', '.join(SHORTHAND_KEYS)})",
        )
    if len(keys) != 1:
        raise RequestError(
            path, f"a condition holds exactly one operator, got {', '.join(sorted(keys))}"
        )
    op = keys[0]
    if op not in OPERATORS:  # a shorthand key with a value of the wrong type
        raise RequestError(f"{path}.{op}", "must be a string")
    inner = value[op]
    where = f"{path}.{op}"
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        raise RequestError(path, f"a filter may hold at most {MAX_CONDITIONS} conditions")
    if op == "not":
        return Not(_parse_node(inner, where, depth=depth + 1, counter=counter))
    if op in ("and", "or"):
        if not isinstance(inner, list) or not inner:
            raise RequestError(where, "must be a non-empty array of conditions")
        items = [
            _parse_node(element, f"{where}[{index}]", depth=depth + 1, counter=counter)
            for index, element in enumerate(inner)
        ]
        return And(tuple(items)) if op == "and" else Or(tuple(items))
    return _parse_compare(op, inner, where)  # type: ignore[arg-type]


def _is_shorthand(value: Mapping[Any, Any]) -> bool:
    """The original ``{"bucket", "prefix", "content_type"}`` form (string values only)."""
    return all(
        key in SHORTHAND_KEYS and (item is None or isinstance(item, str))
        for key, item in value.items()
    )


def _shorthand(value: Mapping[Any, Any], path: str, counter: list[int]) -> Node:
    items: list[Node] = []
    for key in SHORTHAND_KEYS:
        item = value.get(key)
        if item is None:
            continue
        where = f"{path}.{key}"
        if not item:
            raise RequestError(where, "must not be empty")
        text = _text(item, where)
        counter[0] += 1
        if key == "prefix":
            items.append(Compare("prefix", "name", text))
        else:
            items.append(Compare("eq", key, text))
    if not items:
        return TRUE
    return items[0] if len(items) == 1 else And(tuple(items))


def _parse_compare(op: Op, inner: object, path: str) -> Compare:
    value_key = "values" if op == "in" else "value"
    if not isinstance(inner, Mapping):
        raise RequestError(path, f'must be an object {{"field": ..., "{value_key}": ...}}')
    for key in inner:
        if key not in ("field", value_key):
            raise RequestError(
                f"{path}.{key}", f"unknown field; expected one of: field, {value_key}"
            )
    field = _parse_field(inner.get("field"), f"{path}.field")
    if value_key not in inner:
        raise RequestError(f"{path}.{value_key}", "required")
    raw = inner[value_key]
    where = f"{path}.{value_key}"
    if op == "in":
        if not isinstance(raw, list) or not raw:
            raise RequestError(where, "must be a non-empty array")
        if len(raw) > MAX_IN_VALUES:
            raise RequestError(where, f"must hold at most {MAX_IN_VALUES} values")
        values = tuple(_value(field, op, item, f"{where}[{i}]") for i, item in enumerate(raw))
        kinds = {isinstance(v, str) for v in values}
        if len(kinds) > 1:
            raise RequestError(where, "must hold values of one type")
        return Compare(op, field, values)
    return Compare(op, field, _value(field, op, raw, where))


def _parse_field(value: object, path: str) -> str:
    if value is None:
        raise RequestError(path, "required")
    if not isinstance(value, str):
        raise RequestError(path, "must be a string")
    if value in FIELDS:
        return value
    if value.startswith(METADATA_PREFIX):
        key = value[len(METADATA_PREFIX) :]
        if not key or len(key) > MAX_METADATA_KEY_CHARS or "\0" in key:
            raise RequestError(
                path, f"a metadata key must be 1-{MAX_METADATA_KEY_CHARS} characters, no NUL"
            )
        return value
    shown = value if len(value) <= 64 else value[:64] + "..."
    raise RequestError(
        path,
        f"unknown field {shown!r}; expected one of: {', '.join(FIELDS)}, metadata.KEY",
    )


def _value(field: str, op: Op, value: object, path: str) -> Scalar:
    if field in FIELDS:
        kind = FIELDS[field]
    elif isinstance(value, str):
        kind = "text"
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if op == "prefix":
            raise RequestError(path, "prefix needs a string value")
        return _number(value, path)
    else:
        raise RequestError(path, "must be a string or a number")
    if op == "prefix" and kind != "text":
        raise RequestError(path.rsplit(".", 1)[0], f"prefix applies to text fields, not {field}")
    if kind == "text":
        return _text(value, path)
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise RequestError(path, "must be an integer")
        if not _INT64[0] <= value <= _INT64[1]:
            raise RequestError(path, "must fit in 64 bits")
        return value
    return _time(value, path)


def _text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise RequestError(path, "must be a string")
    if len(value) > MAX_STRING_CHARS:
        raise RequestError(path, f"must be at most {MAX_STRING_CHARS} characters")
    if "\0" in value:  # PostgreSQL text cannot hold NUL; it would fail as a 500
        raise RequestError(path, "must not contain NUL characters")
    return value


def _number(value: int | float, path: str) -> Decimal:
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(path, "must be a finite number")
    # Compared with the float 1e38, as JSON Schema validators compare "maximum".
    if abs(value) > 1e38:
        raise RequestError(path, "must be at most 1e38 in magnitude")
    return Decimal(str(value))


def _time(value: object, path: str) -> datetime:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise RequestError(path, "must be an RFC 3339 time such as 2025-01-31T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as e:
        raise RequestError(path, f"is not a valid time: {e}") from e
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# -- compiling -----------------------------------------------------------------

_COLUMNS: dict[str, sql.Composable] = {
    "bucket": sql.SQL("d.bucket"),
    "name": sql.SQL("d.name"),
    "content_type": sql.SQL("d.content_type"),
    "generation": sql.SQL("d.active_generation"),
    "created_at": sql.SQL("d.created_at"),
    "updated_at": sql.SQL("d.updated_at"),
}
_RANGE_SQL: dict[str, sql.SQL] = {
    "gt": sql.SQL(">"),
    "gte": sql.SQL(">="),
    "lt": sql.SQL("<"),
    "lte": sql.SQL("<="),
}
# Metadata values are strings; only those that read as plain decimal numbers take part in
# numeric tests. The CASE keeps the cast from ever seeing anything else: the spaces are
# the ASCII ones the cast skips (PostgreSQL's \s also matches Unicode spaces).
_SPACE = r"[ \t\n\r\f\v]*"
_NUMERIC_TEXT = rf"^{_SPACE}[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{{1,3}})?{_SPACE}$"


class _Binder:
    """Collects parameters under generated names, for ``%(name)s`` placeholders."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.params: dict[str, Any] = {}

    def __call__(self, value: Any) -> sql.Placeholder:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)


def compile_filter(
    node: Node | None, *, prefix: str = "f"
) -> tuple[sql.Composable, dict[str, Any]]:
    """A boolean SQL expression over ``d`` (documents) and its parameters.

    No filter compiles to ``TRUE``. Parameter names start with ``prefix``.
    """
    bind = _Binder(prefix)
    if node is None:
        return sql.SQL("TRUE"), {}
    return _compile(node, bind), bind.params


def _compile(node: Node, bind: _Binder) -> sql.Composable:
    if node == TRUE:
        return sql.SQL("TRUE")
    if isinstance(node, And | Or):
        joiner = sql.SQL(" AND ") if isinstance(node, And) else sql.SQL(" OR ")
        return sql.SQL("({})").format(joiner.join(_compile(item, bind) for item in node.items))
    if isinstance(node, Not):
        # IS NOT TRUE: a document without the field (NULL) does satisfy "not field = x".
        return sql.SQL("(({}) IS NOT TRUE)").format(_compile(node.item, bind))
    return _compile_compare(node, bind)


def _compile_compare(node: Compare, bind: _Binder) -> sql.Composable:
    field, op, value = node.field, node.op, node.value
    sample = value[0] if isinstance(value, tuple) else value
    if field in _COLUMNS:
        column = _COLUMNS[field]
    else:
        key = field[len(METADATA_PREFIX) :]
        if isinstance(sample, str):
            if op == "eq":  # containment can use the GIN index on documents.metadata
                return sql.SQL("d.metadata @> {}").format(bind(Jsonb({key: value})))
            column = sql.SQL("(d.metadata ->> {})").format(bind(key))
        else:
            name = bind(key)
            column = sql.SQL(
                "(CASE WHEN (d.metadata ->> {k}) ~ {pattern}"
                " THEN (d.metadata ->> {k})::numeric END)"
            ).format(k=name, pattern=sql.Literal(_NUMERIC_TEXT))
    if op == "eq":
        return sql.SQL("{} = {}").format(column, bind(value))
    if op == "in":
        return sql.SQL("{} = ANY({})").format(column, bind(list(value)))  # type: ignore[arg-type]
    if op == "prefix":
        # starts_with() takes the prefix literally: '%', '_' and '\' need no escaping.
        return sql.SQL("starts_with({}, {})").format(column, bind(value))
    return sql.SQL("{} {} {}").format(column, _RANGE_SQL[op], bind(value))
