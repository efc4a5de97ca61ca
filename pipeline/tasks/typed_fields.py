"""The user's `fields` JSON Schema as real Arrow columns, and answers converted to fill them.

Public interface (pure; pyarrow and stdlib only):

    arrow_fields(schema, reserved) -> list[pa.Field]   one nullable field per top-level property
    convert(value, schema) -> (row, errors)            row: {property: python value}; errors:
                                                       {dotted.path: reason} for what became null
    rows_to_table(rows, fields) -> pa.Table
    dotted_path(path) -> str                           ("line_items", 2, "amount") -> "line_items.2.amount"

Types (the subset of pipeline/tasks/_jsonschema.py):
    string -> string; integer -> int64; number -> float64; boolean -> bool;
    string with format "date" -> date32; with format "date-time" -> timestamp[us, UTC];
    other formats and string enums -> string (plain, not dictionary: Parquet dictionary-encodes
    strings anyway, and dictionary columns do not concatenate across files with other values);
    enum/const without a type -> the type all its non-null values share (else JSON text);
    ["T", "null"] and anyOf [T, {"type": "null"}] -> T (every column is nullable);
    ["integer", "number"] -> float64; object with properties -> struct (recursively);
    array with one item schema -> list of the item type; $ref "#/..." -> the referenced schema;
    anything else (anyOf or a type list of different types, an object without properties,
    prefixItems, {} / true) -> string holding the value as JSON (sort_keys, UTF-8); only null -> string.

Column names (checked by arrow_fields, every problem listed in one ValueError): a property name
must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$ and not be an SQL keyword that DuckDB or Spark refuse
as a bare column name (`order`, `from`, `select`, `desc`, `left`, `true`, ...), so `SELECT total
FROM t` works unquoted in DuckDB, Spark and pandas.query. The same rule holds for struct field
names at any depth: unnesting (DuckDB's unnest, Spark's explode, pandas.json_normalize) makes
them columns. Names are compared case-insensitively (DuckDB and Spark are): top-level names may
not collide with `reserved` (the caller's fixed columns) nor with each other; struct field names
may not collide with their siblings.

Conversion (strict, no locale guessing; never raises on data; null stays null without error):
    string: a JSON string, as is.
    integer: a JSON integer, or a float with no fraction (12.0: JSON Schema calls it an integer),
             or a string that is ^[+-]?[0-9]+$ after trimming whitespace; within int64.
    number: a JSON number (not a boolean), or a string that is a plain decimal number after
            trimming (^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?$); finite as a double.
            "1.234,50 EUR", "1,234.50", "$12" do not convert.
    boolean: a JSON boolean only ("true" as a string does not convert).
    date: a string YYYY-MM-DD (RFC 3339 full-date) that is a real calendar date, after trimming.
    date-time: RFC 3339 YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), "T"/"Z" in either case;
               converted to UTC; fraction truncated to microseconds; no offset -> does not convert.
    enum/const: the value must equal one of the values (JSON equality: 1 == 1.0, true != 1) before
                it is converted to the column type.
    struct: a JSON object; each property converted; keys the schema does not declare are dropped
            and reported. list: a JSON array; an item that does not convert becomes null (the
            list keeps its length). JSON text: any value but null.
    Errors are keyed by dotted path (list indices as numbers; "(root)" when the answer is not an
    object); a reason says what was expected and shows the value.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Iterable

import pyarrow as pa

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# DuckDB 1.x keywords that cannot be a bare column name (its 'reserved' ones, the 'type_function'
# ones that fail unquoted; true/false/null parse as constants), plus Spark's strict-non-reserved
# MINUS. tests/test_typed_fields.py checks this against duckdb_keywords().
SQL_KEYWORDS = frozenset("""
all analyse analyze and any array as asc asymmetric both case cast check collate column constraint
create default deferrable desc describe distinct do else end except false fetch for foreign from
group having in initially intersect into lambda lateral leading limit not null offset on only or
order pivot pivot_longer pivot_wider placing primary qualify references returning select show some
summarize symmetric table then to trailing true union unique unpivot using variadic when where
window with
anti asof at authorization binary by collation concurrently cross freeze full glob ilike inner is
isnull join left like natural notnull outer overlaps positional right semi similar tablesample
unpack verbose
minus
""".split())

_ARROW = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_(),
          "date": pa.date32(), "datetime": pa.timestamp("us", tz="UTC"), "json": pa.string(),
          "null": pa.string()}
_INT64 = (-2**63, 2**63 - 1)
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATETIME_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                            r"(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))")


@dataclass(frozen=True)
class _Column:
    """What a schema node becomes: its kind, allowed values and (struct, list) its parts."""
    kind: str  # a key of _ARROW, or "struct" / "list"
    enum: tuple | None = None
    children: tuple[tuple[str, "_Column"], ...] = ()
    item: "_Column | None" = None


_JSON = _Column("json")


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema's enum sees it: 1 == 1.0, but true != 1 and "1" != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    return type(a) is type(b) and a == b


def _enum_kind(values: Iterable[Any]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "null"
    if all(isinstance(v, str) for v in present):
        return "string"
    if all(isinstance(v, bool) for v in present):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "integer"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "number"
    return "json"


def _merge(columns: list[_Column]) -> _Column:
    """One column for alternatives (anyOf, a type list): null drops out; equal ones are one."""
    present = [c for c in columns if c.kind != "null"]
    if not present:
        return _Column("null")
    kinds = {c.kind for c in present}
    if kinds == {"integer", "number"}:
        return _Column("number")
    first = present[0]
    if all(c == first for c in present):
        return first
    if len(kinds) == 1 and kinds <= set(_ARROW) and all(c.enum is not None for c in present):
        return _Column(first.kind, enum=tuple(v for c in present for v in c.enum))
    if len(kinds) == 1 and kinds <= set(_ARROW):
        return _Column(first.kind)
    return _JSON


class _Resolver:
    def __init__(self, root: dict[str, Any]):
        self.root = root

    def pointer(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"$ref {ref!r}: only local references ('#/$defs/...') are supported")
        node: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"$ref {ref!r} does not point into the schema")
            node = node[part]
        return node

    def column(self, node: Any, refs: tuple[str, ...] = ()) -> _Column:
        if not isinstance(node, dict):
            return _JSON  # true / false schemas
        if "$ref" in node:
            ref = node["$ref"]
            if ref in refs:
                raise ValueError(f"$ref {ref!r} is recursive: a recursive type cannot be a column")
            return self.column(self.pointer(ref), (*refs, ref))
        if "anyOf" in node:
            return _merge([self.column(branch, refs) for branch in node["anyOf"]])
        enum = (node["const"],) if "const" in node else tuple(node["enum"]) if "enum" in node else None
        types = node.get("type")
        if types is None:
            types = (_enum_kind(enum) if enum is not None else "object" if "properties" in node
                     else "array" if "items" in node else "any")
        types = [types] if isinstance(types, str) else list(types)
        column = _merge([self.typed(t, node, refs) for t in types]) if types else _JSON
        return column if enum is None else replace(column, enum=enum)

    def typed(self, type_name: str, node: dict[str, Any], refs: tuple[str, ...]) -> _Column:
        if type_name == "string":
            return _Column({"date": "date", "date-time": "datetime"}.get(node.get("format"), "string"))
        if type_name in ("integer", "number", "boolean", "null", "json"):  # json, null: an enum's
            return _Column(type_name)
        if type_name == "object" and isinstance(node.get("properties"), dict) and node["properties"]:
            return _Column("struct", children=tuple((name, self.column(sub, refs))
                                                    for name, sub in node["properties"].items()))
        if type_name == "array" and isinstance(node.get("items"), dict) and "prefixItems" not in node:
            return _Column("list", item=self.column(node["items"], refs))
        return _JSON


@lru_cache(maxsize=32)
def _columns(schema_json: str) -> tuple[tuple[str, _Column], ...]:
    schema = json.loads(schema_json)
    top = _Resolver(schema).column(schema)
    if top.kind != "struct":
        raise ValueError("a fields schema must be an object with properties at the top level")
    return top.children


def _schema_columns(schema: dict[str, Any]) -> tuple[tuple[str, _Column], ...]:
    return _columns(json.dumps(schema))  # not sort_keys: the columns keep the properties' order


def _arrow_type(column: _Column) -> pa.DataType:
    if column.kind == "struct":
        return pa.struct([pa.field(name, _arrow_type(child), nullable=True)
                          for name, child in column.children])
    if column.kind == "list":
        return pa.list_(pa.field("item", _arrow_type(column.item), nullable=True))
    return _ARROW[column.kind]


def _name_problems(children, where: str, taken: dict[str, str]) -> list[str]:
    """Problems of the names of one object's properties (and of nested structs' names).
    taken: lower-cased names already in use -> how a message calls them."""
    problems, seen = [], dict(taken)
    for name, child in children:
        path, lower = f"{where}{name}", name.lower()
        if not NAME.fullmatch(name):
            problems.append(f"property {path!r}: not a plain column name (letters, digits, _; not "
                            "starting with a digit; at most 63 characters)")
        elif lower in SQL_KEYWORDS:
            problems.append(f"property {path!r}: {lower!r} is an SQL keyword; it would need quoting")
        elif lower in seen:
            problems.append(f"property {path!r}: collides with {seen[lower]} (names are "
                            "case-insensitive in DuckDB and Spark)")
        else:
            seen[lower] = f"property {path!r}"
        while child.kind == "list":
            child, path = child.item, path + "[]"
        if child.kind == "struct":
            problems += _name_problems(child.children, path + ".", {})
    return problems


def arrow_fields(schema: dict[str, Any], reserved: Iterable[str] = ()) -> list[pa.Field]:
    """One nullable Arrow field per top-level property of a `fields` schema (module doc); raise
    ValueError naming every property that cannot be a column, and why."""
    children = _schema_columns(schema)
    taken = {name.lower(): f"the fixed column {name!r}" for name in reserved}
    problems = _name_problems(children, "", taken)
    if problems:
        raise ValueError("fields schema: properties that cannot be columns:\n  " + "\n  ".join(problems))
    return [pa.field(name, _arrow_type(column), nullable=True) for name, column in children]


def dotted_path(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path) or "(root)"


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


class _Bad(Exception):
    """One value that does not convert; message = the reason."""


def _scalar(kind: str, value: Any) -> Any:
    if kind == "string":
        if isinstance(value, str):
            return value
        raise _Bad("expected a string")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise _Bad("expected true or false")
    if kind == "integer":
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise _Bad("expected an integer, the number has a fraction")
            value = int(value)
        elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
            value = int(value.strip())
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Bad("expected an integer (a JSON integer or a string of digits)")
        if not _INT64[0] <= value <= _INT64[1]:
            raise _Bad("integer out of the int64 range")
        return value
    if kind == "number":
        if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
            value = float(value.strip())
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _Bad("expected a number (a JSON number or a plain decimal string)")
        try:
            number = float(value)
        except OverflowError:
            raise _Bad("number too large for a double") from None
        if not math.isfinite(number):
            raise _Bad("number is not finite")
        return number
    if kind == "date":
        match = _DATE_TEXT.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise _Bad("expected a date YYYY-MM-DD")
        try:
            return dt.date(*map(int, match.groups()))
        except ValueError:
            raise _Bad("not a calendar date") from None
    if kind == "datetime":
        match = _DATETIME_TEXT.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise _Bad("expected an RFC 3339 date-time with a time zone (YYYY-MM-DDTHH:MM:SSZ)")
        year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
        try:
            if not zulu and (int(off_h) > 23 or int(off_m) > 59):
                raise ValueError("offset out of range")
            offset = dt.timedelta(0) if zulu else (1 if sign == "+" else -1) * dt.timedelta(
                hours=int(off_h), minutes=int(off_m))
            stamp = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                                int((fraction or "0")[:6].ljust(6, "0")), tzinfo=dt.timezone(offset))
            return stamp.astimezone(dt.timezone.utc)
        except (ValueError, OverflowError):
            raise _Bad("not a valid date-time") from None
    if kind == "json":
        try:
            return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError):
            raise _Bad("not representable as JSON") from None
    raise _Bad("the schema allows only null here")  # kind "null"


def _convert(column: _Column, value: Any, path: tuple, errors: dict[str, str]) -> Any:
    if value is None:
        return None
    try:
        if column.enum is not None and not any(_json_equal(value, allowed) for allowed in column.enum):
            raise _Bad("not one of the enum values")
        if column.kind == "struct":
            if not isinstance(value, dict):
                raise _Bad("expected an object")
            declared = {name for name, _ in column.children}
            for extra in (key for key in value if key not in declared):
                errors[dotted_path((*path, extra))] = "not a property of the schema; dropped"
            return {name: _convert(child, value.get(name), (*path, name), errors)
                    for name, child in column.children}
        if column.kind == "list":
            if not isinstance(value, list):
                raise _Bad("expected an array")
            return [_convert(column.item, item, (*path, i), errors) for i, item in enumerate(value)]
        return _scalar(column.kind, value)
    except _Bad as bad:
        errors[dotted_path(path)] = f"{bad}: {_show(value)}"
        return None


def convert(value: Any, schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(row for the columns of arrow_fields(schema), {dotted.path: reason} of what became null)."""
    children = _schema_columns(schema)
    errors: dict[str, str] = {}
    row = _convert(_Column("struct", children=children), value, (), errors)
    return (row if row is not None else {name: None for name, _ in children}), errors


def rows_to_table(rows: list[dict[str, Any]], fields: list[pa.Field]) -> pa.Table:
    """The Arrow table of converted rows (missing keys are null) with exactly these fields."""
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))
