"""pipeline/tasks/typed_fields.py: a fields schema becomes real Arrow columns (DuckDB queries them without
JSON functions), names that would need quoting are refused, and answers convert strictly."""
from __future__ import annotations

import datetime as dt
import json
import random

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.tasks import SCHEMA_DIR
from pipeline.tasks.typed_fields import SQL_KEYWORDS, arrow_fields, convert, dotted_path, rows_to_table

RESERVED = {"doc_id", "source_uri", "page_index", "task", "answer_json", "valid", "error"}
UTC = dt.timezone.utc

SCHEMA = {
    "type": "object",
    "$defs": {
        "address": {"type": "object", "properties": {"street": {"type": ["string", "null"]},
                                                     "city": {"type": "string"},
                                                     "zip": {"$ref": "#/$defs/zip"}}},
        "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
    },
    "properties": {
        "vendor_name": {"type": ["string", "null"]},
        "total": {"type": ["number", "null"]},
        "items_count": {"type": "integer"},
        "paid": {"type": "boolean"},
        "invoice_date": {"type": ["string", "null"], "format": "date"},
        "issued_at": {"type": "string", "format": "date-time"},
        "status": {"enum": ["open", "paid", None]},
        "priority": {"enum": [1, 2, 3]},
        "mixed": {"enum": ["a", 1]},
        "rate": {"type": ["integer", "number"]},
        "due": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
        "reference": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        "vendor_address": {"$ref": "#/$defs/address"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "line_items": {"type": "array", "items": {"type": "object", "properties": {
            "description": {"type": "string"}, "amount": {"type": ["number", "null"]},
            "dates": {"type": "array", "items": {"type": "string", "format": "date"}}}}},
        "extra": {"type": "object", "additionalProperties": {"type": "string"}},
        "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
        "anything": {},
        "currency": {"const": "EUR"},
        "nothing": {"type": "null"},
        "email": {"type": "string", "format": "email"},
    },
}

EXPECTED_TYPES = {
    "vendor_name": pa.string(), "total": pa.float64(), "items_count": pa.int64(), "paid": pa.bool_(),
    "invoice_date": pa.date32(), "issued_at": pa.timestamp("us", tz="UTC"), "status": pa.string(),
    "priority": pa.int64(), "mixed": pa.string(), "rate": pa.float64(), "due": pa.date32(),
    "reference": pa.string(),
    "vendor_address": pa.struct([("street", pa.string()), ("city", pa.string()), ("zip", pa.string())]),
    "tags": pa.list_(pa.string()),
    "line_items": pa.list_(pa.struct([("description", pa.string()), ("amount", pa.float64()),
                                      ("dates", pa.list_(pa.date32()))])),
    "extra": pa.string(), "pair": pa.string(), "anything": pa.string(), "currency": pa.string(),
    "nothing": pa.string(), "email": pa.string(),
}


def _all_nullable(t: pa.DataType) -> bool:
    if pa.types.is_struct(t):
        return all(t.field(i).nullable and _all_nullable(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t):
        return t.value_field.nullable and _all_nullable(t.value_type)
    return True


def test_every_construct_maps_to_its_arrow_type():
    fields = arrow_fields(SCHEMA, RESERVED)
    assert [f.name for f in fields] == list(SCHEMA["properties"])  # the schema's order
    for field in fields:
        assert field.type == EXPECTED_TYPES[field.name], field.name
        assert field.nullable and _all_nullable(field.type), field.name


def test_shipped_invoice_schema():
    schema = json.loads((SCHEMA_DIR / "fields" / "invoice.json").read_text())
    fields = {f.name: f.type for f in arrow_fields(schema, RESERVED)}
    assert fields["total"] == pa.float64() and fields["invoice_number"] == pa.string()
    assert fields["line_items"] == pa.list_(pa.struct([("description", pa.string()), ("quantity", pa.float64()),
                                                       ("amount", pa.float64())]))


def _refusal(properties: dict, reserved=RESERVED, **extra) -> str:
    with pytest.raises(ValueError) as info:
        arrow_fields({"type": "object", "properties": properties, **extra}, reserved)
    return str(info.value)


def test_names_that_cannot_be_columns_are_refused_and_named():
    message = _refusal({"Doc_ID": {"type": "string"}, "Total": {"type": "number"}, "total": {"type": "number"},
                        "1st": {"type": "string"}, "unit price": {"type": "number"},
                        "größe": {"type": "string"},
                        "x" * 64: {"type": "string"}, "order": {"type": "string"}, "From": {"type": "string"},
                        "ok_name": {"type": "string"}})
    for name in ("Doc_ID", "total", "1st", "unit price", "größe", "x" * 64, "order", "From"):
        assert f"'{name}'" in message, name
    assert "'ok_name'" not in message and "'Total'" in message  # Total is named as the one collided with
    assert "fixed column 'doc_id'" in message and "SQL keyword" in message
    assert "x" * 63 not in _refusal({"x" * 63: {"type": "string"}, "select": {}})  # 63 characters are fine


def test_nested_struct_names_are_checked_too():
    message = _refusal({"line_items": {"type": "array", "items": {"type": "object", "properties": {
        "Amount": {"type": "number"}, "amount": {"type": "number"}, "desc": {"type": "string"},
        "description": {"type": "string"},
        "sub": {"type": "object", "properties": {"bad-name": {"type": "string"}}}}}},
        "doc_id_nested": {"type": "object", "properties": {"doc_id": {"type": "string"}}}})
    assert "'line_items[].amount'" in message and "'line_items[].sub.bad-name'" in message
    assert "'line_items[].desc': 'desc' is an SQL keyword" in message  # a column once unnested
    assert "'line_items[].description'" not in message
    # a struct field may share a fixed column's name: it is not a column of the table
    assert "doc_id_nested" not in message


def test_recursive_ref_is_refused():
    with pytest.raises(ValueError, match="recursive"):
        arrow_fields({"type": "object", "$defs": {"node": {"type": "object", "properties": {
            "child": {"$ref": "#/$defs/node"}}}}, "properties": {"tree": {"$ref": "#/$defs/node"}}}, set())


def test_top_level_must_be_an_object_with_properties():
    with pytest.raises(ValueError, match="object with properties"):
        arrow_fields({"type": "array", "items": {"type": "string"}}, set())


def _unusable_duckdb_keywords() -> list[str]:
    unusable = []
    for (word,) in duckdb.sql("select keyword_name from duckdb_keywords()").fetchall():
        try:  # a bare column name must select the column, not parse as something else
            got = duckdb.sql(f'select {word} from (select 42 as "{word}")').fetchall()
            if got != [(42,)]:
                unusable.append(word)
        except duckdb.Error:
            unusable.append(word)
    return unusable


def test_keyword_list_covers_every_name_duckdb_refuses_unquoted():
    unusable = _unusable_duckdb_keywords()
    assert {"order", "select", "true", "left"} <= set(unusable)
    assert set(unusable) <= SQL_KEYWORDS, sorted(set(unusable) - SQL_KEYWORDS)
    # and typical field names that are (non-reserved) keywords stay allowed, and work unquoted
    names = ["date", "year", "type", "name", "value", "total", "amount", "month", "time", "language"]
    fields = arrow_fields({"type": "object", "properties": {n: {"type": "integer"} for n in names}}, set())
    typed = rows_to_table([{n: i for i, n in enumerate(names)}], fields)  # noqa: F841 - DuckDB reads it
    assert duckdb.sql(f"select {', '.join(names)} from typed where date = 0 and year = 1").fetchall() == \
        [tuple(range(len(names)))]


# --- conversion --------------------------------------------------------------------------------

CASES = [  # property, answer value, converted (or None), error expected
    ("total", 1234.5, 1234.5, False), ("total", 12, 12.0, False), ("total", " 1234.50 ", 1234.5, False),
    ("total", "1e3", 1000.0, False), ("total", "-.5", -0.5, False),
    ("total", "1.234,50 EUR", None, True), ("total", "1,234.50", None, True), ("total", "$12", None, True),
    ("total", True, None, True), ("total", "NaN", None, True), ("total", "1e999", None, True),
    ("total", int("9" * 400), None, True), ("total", None, None, False),
    ("items_count", 3, 3, False), ("items_count", 3.0, 3, False), ("items_count", " 42 ", 42, False),
    ("items_count", 3.5, None, True), ("items_count", "3.0", None, True), ("items_count", 2**63, None, True),
    ("items_count", False, None, True), ("items_count", "1,000", None, True),
    ("paid", True, True, False), ("paid", "true", None, True), ("paid", 1, None, True),
    ("invoice_date", "2026-03-14", dt.date(2026, 3, 14), False),
    ("invoice_date", " 2024-02-29", dt.date(2024, 2, 29), False),
    ("invoice_date", "31/02/2026", None, True), ("invoice_date", "2026-02-31", None, True),
    ("invoice_date", "yesterday", None, True), ("invoice_date", "2026-3-14", None, True),
    ("invoice_date", "2026-03-14T10:00:00Z", None, True),
    ("issued_at", "2026-03-14T10:30:00Z", dt.datetime(2026, 3, 14, 10, 30, tzinfo=UTC), False),
    ("issued_at", "2026-03-14t12:30:00.1234567+02:00",
     dt.datetime(2026, 3, 14, 10, 30, 0, 123456, tzinfo=UTC), False),
    ("issued_at", "2026-03-14T10:30:00", None, True), ("issued_at", "2026-03-14 10:30:00Z", None, True),
    ("issued_at", "2026-03-14T25:00:00Z", None, True), ("issued_at", "2026-03-14T10:30:60Z", None, True),
    ("issued_at", "2026-03-14T10:30:00+24:00", None, True),
    ("status", "paid", "paid", False), ("status", "Paid", None, True), ("status", None, None, False),
    ("priority", 2, 2, False), ("priority", 2.0, 2, False), ("priority", 4, None, True),
    ("priority", "2", None, True), ("priority", True, None, True),
    ("mixed", "a", '"a"', False), ("mixed", 1, "1", False), ("mixed", "b", None, True),
    ("rate", 3, 3.0, False), ("due", "2026-04-01", dt.date(2026, 4, 1), False), ("due", "soon", None, True),
    ("reference", "INV-7", '"INV-7"', False), ("reference", 7, "7", False),
    ("tags", ["a", "b"], ["a", "b"], False), ("tags", "a, b", None, True),
    ("extra", {"b": "x", "a": "é"}, '{"a": "é", "b": "x"}', False), ("pair", ["x", 1], '["x", 1]', False),
    ("anything", {"k": [1, None]}, '{"k": [1, null]}', False), ("anything", float("nan"), None, True),
    ("currency", "EUR", "EUR", False), ("currency", "USD", None, True),
    ("nothing", None, None, False), ("nothing", "x", None, True), ("email", "a@b.c", "a@b.c", False),
    ("vendor_name", 42, None, True),
]


@pytest.mark.parametrize("prop, value, expected, bad", CASES)
def test_convert_one_value(prop, value, expected, bad):
    row, errors = convert({prop: value}, SCHEMA)
    assert set(row) == set(SCHEMA["properties"])
    got = row[prop]
    assert got == expected and type(got) is type(expected), (got, expected)
    if isinstance(expected, dt.datetime):
        assert got.tzinfo == UTC
    assert (prop in errors) is bad and len(errors) == int(bad), errors
    # whatever came out fits the column
    rows_to_table([row], arrow_fields(SCHEMA, RESERVED))


def test_nested_values_convert_item_by_item_with_dotted_paths():
    answer = {"vendor_address": {"street": None, "city": 1, "zip": "10115", "country": "DE"},
              "line_items": [{"description": "Toner", "amount": "1150.00", "dates": ["2026-01-02", "2.1.2026"]},
                             {"description": "Paper", "amount": "45,00"}, None, "junk"]}
    row, errors = convert(answer, SCHEMA)
    assert row["vendor_address"] == {"street": None, "city": None, "zip": "10115"}
    assert row["line_items"] == [
        {"description": "Toner", "amount": 1150.0, "dates": [dt.date(2026, 1, 2), None]},
        {"description": "Paper", "amount": None, "dates": None}, None, None]
    assert set(errors) == {"vendor_address.city", "vendor_address.country", "line_items.0.dates.1",
                           "line_items.1.amount", "line_items.3"}
    assert errors["vendor_address.country"] == "not a property of the schema; dropped"
    reason = errors["line_items.1.amount"]
    assert reason.startswith("expected a number") and '"45,00"' in reason
    assert dotted_path(("line_items", 1, "amount")) == "line_items.1.amount" and dotted_path(()) == "(root)"


def test_an_answer_that_is_not_an_object():
    row, errors = convert(["not", "an", "object"], SCHEMA)
    assert all(v is None for v in row.values()) and list(errors) == ["(root)"]
    row, errors = convert(None, SCHEMA)
    assert all(v is None for v in row.values()) and errors == {}


def _random_json(rng: random.Random, depth=0):
    choices = [None, True, False, 0, -7, 2**70, 1.5, -0.0, "", "2026-03-14", "2026-03-14T10:00:00Z", "12.5",
               " 42 ", "open", "x" * 3, "1,234.50", "é"]
    if depth < 3 and rng.random() < 0.35:
        if rng.random() < 0.5:
            return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
        keys = list(SCHEMA["properties"]) + ["street", "city", "zip", "description", "amount", "dates", "??"]
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}
    return rng.choice(choices)


def test_convert_never_raises_and_its_rows_always_fit_the_columns():
    rng = random.Random(12)
    fields = arrow_fields(SCHEMA, RESERVED)
    rows = []
    for _ in range(2000):
        answer = {name: _random_json(rng) for name in SCHEMA["properties"] if rng.random() < 0.6}
        row, errors = convert(answer, SCHEMA)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in errors.items())
        rows.append(row)
    table = rows_to_table(rows, fields)
    assert table.num_rows == 2000 and table.schema == pa.schema(fields)
    assert table.column("total").null_count < 2000  # some values did convert


def test_duckdb_reads_real_columns(tmp_path):
    fields = arrow_fields(SCHEMA, RESERVED)
    answers = [
        {"vendor_name": "Acme", "total": "1234.50", "invoice_date": "2026-03-14",
         "issued_at": "2026-03-14T09:00:00Z",
         "vendor_address": {"city": "Berlin", "zip": "10115"}, "tags": ["urgent"],
         "line_items": [{"description": "Toner", "amount": 1150, "dates": ["2026-03-01"]}]},
        {"vendor_name": "Small Shop", "total": 99.9, "invoice_date": "31/02/2026"},
        {"vendor_name": "Big Corp", "total": 5000, "paid": True},
    ]
    rows = [convert(answer, SCHEMA)[0] for answer in answers]
    for row, doc in zip(rows, ("a", "b", "c")):
        row["doc_id"] = doc  # a fixed column next to the typed ones
    table = rows_to_table(rows, [pa.field("doc_id", pa.string())] + fields)
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    db = duckdb.connect()
    db.execute(f"create view t as select * from read_parquet('{path}')")
    assert db.sql("SELECT vendor_name, total FROM t WHERE total > 1000 ORDER BY total").fetchall() == \
        [("Acme", 1234.5), ("Big Corp", 5000.0)]
    types = dict(db.sql("select column_name, column_type from (describe t)").fetchall())
    assert types["invoice_date"] == "DATE" and types["due"] == "DATE"
    assert types["issued_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["total"] == "DOUBLE" and types["items_count"] == "BIGINT" and types["paid"] == "BOOLEAN"
    assert types["vendor_address"].startswith("STRUCT(") and types["tags"] == "VARCHAR[]"
    assert types["line_items"].startswith("STRUCT(") and types["line_items"].endswith(")[]")
    assert db.sql("select vendor_address.city, line_items[1].amount, line_items[1].dates[1], tags[1] "
                  "from t where invoice_date = DATE '2026-03-14'").fetchall() == \
        [("Berlin", 1150.0, dt.date(2026, 3, 1), "urgent")]
    assert db.sql("select count(*) from t where invoice_date is null").fetchall() == [(2,)]
    assert db.sql("select epoch(issued_at) from t where doc_id = 'a'").fetchall() == \
        [(dt.datetime(2026, 3, 14, 9, tzinfo=UTC).timestamp(),)]
    frame = pq.read_table(path).to_pandas()
    assert list(frame.query("total > 1000").vendor_name) == ["Acme", "Big Corp"]
