"""The answer format is pinned: compact JSON (`,` and `:`, no whitespace, properties in schema order),
whatever vLLM is installed (pipeline/engine/answer_format.py says why it drifted before).

The grammar is checked with xgrammar itself, the library vLLM compiles it with: every shipped task's
answer, alone and asked together, is admitted written compactly and refused written as vLLM 0.26's
`json=` path wrote it (`", "`, `": "`) or with keys out of order. The engine's sampling parameters
carry that grammar and no `json=` schema, so vLLM's own separators never apply. The bytes the real
engine writes are checked end to end in tests/test_tiny_reader_eval.py."""
import json

import pytest

xgrammar = pytest.importorskip("xgrammar")

from pipeline.core.config import EngineSpec, TaskSpec  # noqa: E402
from pipeline.engine import answer_format  # noqa: E402
from pipeline.tasks import get_task  # noqa: E402

import harness  # noqa: E402


def _admits(schema: dict, text: str) -> bool:
    return xgrammar.testing._is_grammar_accept_string(xgrammar.Grammar.from_ebnf(answer_format.grammar(schema)), text)


def _in_schema_order(schema: dict, value):
    """`value` with every object's keys in the order its schema lists them (what the grammar admits)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _in_schema_order(props[k], value[k]) for k in props if k in value}
    if isinstance(value, list):
        return [_in_schema_order(schema.get("items", {}), v) for v in value]
    return value


def _spaced(value) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def _answers():
    """(task, one answer in schema order): the tiny reader's gold fields, hand-written for the others."""
    fields_gold = (harness.REPO / "models/tiny-reader/pages/fields.jsonl").read_text().splitlines()
    invoice = get_task("fields", TaskSpec(name="fields", fields_schema="invoice"))
    yield get_task("docvqa"), {"answer": "16,091.25 EUR", "evidence": "Total: 16,091.25 EUR"}
    yield get_task("chartqa"), {"answer": "42 %", "value": 42, "unit": "%"}
    yield get_task("classify"), {"doc_type": "invoice", "language": "en"}
    for line in fields_gold[:2]:
        yield invoice, _in_schema_order(invoice.schema, json.loads(line)["fields"])


@pytest.mark.parametrize("together", [False, True])
def test_every_task_answer_is_admitted_compact_and_refused_spaced(together):
    for task, answer in _answers():
        schema, value = (task.batched_schema(2), {"answers": [answer, answer]}) if together else (task.schema, answer)
        assert _admits(schema, answer_format.compact(value)), (task.name, value)
        assert not _admits(schema, _spaced(value)), task.name
        assert not _admits(schema, json.dumps(value, indent=1)), task.name


def test_keys_come_in_schema_order_and_no_others():
    schema = get_task("docvqa").schema
    assert _admits(schema, '{"answer":"a","evidence":"b"}') and _admits(schema, '{"answer":"a"}')
    assert not _admits(schema, '{"evidence":"b","answer":"a"}')
    assert not _admits(schema, '{"answer":"a","note":"b"}')


def test_values_of_any_type_are_compact_too():
    """xgrammar 0.2.8 writes `", "` inside untyped values whatever the separators (answer_format.py)."""
    schema = {"type": "object", "properties": {"extra": {}}, "required": ["extra"], "additionalProperties": False}
    value = {"extra": {"a": [1, 2, {"b": None}], "c": "d"}}
    assert _admits(schema, answer_format.compact(value))
    assert not _admits(schema, '{"extra":{"a":[1, 2,{"b":null}],"c":"d"}}')
    assert not _admits(schema, '{"extra":{"a":[1,2,{"b":null}], "c":"d"}}')


def test_the_engine_asks_for_the_grammar_not_vllms_json_path():
    pytest.importorskip("vllm")
    from pipeline.engine.actor import sampling_params

    schema = get_task("docvqa").batched_schema(3)
    params = sampling_params(EngineSpec(), schema, 64).structured_outputs
    assert params.grammar == answer_format.grammar(schema) and params.json is None
    assert answer_format.grammar(schema) is answer_format.grammar(json.loads(json.dumps(schema)))  # cached
