import json

import jsonschema
import pytest

import datetime as dt

from pipeline.answers.answers import validate_answer
from pipeline.core.config import TaskSpec
from pipeline.commit.rollup import document_rows, vote
from pipeline.core.rows import DOCUMENT_TABLE
from pipeline.tasks import available, get_task
from pipeline.tasks._jsonschema import check_user_schema, schema_problems


def test_every_task_has_a_valid_schema_and_instruction():
    assert set(available()) >= {"docvqa", "chartqa", "fields", "classify"}
    for name in available():
        task = get_task(name, TaskSpec(name=name, fields_schema="invoice"))
        jsonschema.validators.validator_for(task.schema).check_schema(task.schema)
        assert schema_problems(task.schema) == [], name
        text = task.instruction("Q?" if task.needs_question else None)
        assert "JSON Schema" in text and task.prompt_version.endswith(f"{name}-{task.version}")


def test_chartqa_typed_number_and_unit():
    task = get_task("chartqa")
    value, _ = validate_answer('{"answer":"77%","value":77,"unit":"%"}', task.schema)
    assert task.typed(value) == {"answer_text": "77%", "answer_number": 77.0, "answer_unit": "%"}
    value, error = validate_answer('{"answer":"North","value":null,"unit":null}', task.schema)
    assert error is None and task.typed(value)["answer_number"] is None


def test_classify_takes_no_question_and_enforces_the_enum():
    task = get_task("classify")
    assert task.questions_for([], ["ignored"]) == [None]
    assert validate_answer('{"doc_type":"invoice","language":"en"}', task.schema)[1] is None
    assert validate_answer('{"doc_type":"poem","language":"en"}', task.schema)[1] is not None


def test_fields_user_schema_shipped_inline_and_refused(tmp_path):
    assert "total" in get_task("fields", TaskSpec(name="fields", fields_schema="invoice")).schema["properties"]
    inline = {"type": "object", "properties": {"iban": {"type": "string"}}, "required": ["iban"]}
    assert get_task("fields", TaskSpec(name="fields", fields_schema=inline)).schema == inline
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "string", "not": {"const": "x"}}},
                                "patternProperties": {"^x": {}}}))
    with pytest.raises(ValueError) as err:
        get_task("fields", TaskSpec(name="fields", fields_schema=str(path)))
    assert "#/properties/a/not" in str(err.value) and "#/patternProperties" in str(err.value)
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        check_user_schema({"type": "object", "properties": {"a": {"type": "strang"}}}, "x")
    with pytest.raises(ValueError, match="needs task.fields_schema"):
        get_task("fields", TaskSpec(name="fields"))
    with pytest.raises(ValueError, match="remote|local"):
        check_user_schema({"type": "object", "properties": {"a": {"$ref": "https://x/y.json"}}}, "x")


def test_one_vote_rule_for_answers_and_fields():
    a, b = "1,234.50", "1234"
    assert vote([(2, a, "A2"), (0, b, "B0"), (1, "1,234.50 ", "A1")]) == ("A1", 1, 2)  # most pages, earliest of them
    assert vote([(3, a, "A"), (1, b, "B")]) == ("B", 1, 1)  # tie: earliest page
    assert vote([(0, None, "x"), (1, "", "y")]) is None  # abstentions do not vote
    assert vote([]) is None


NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
BASE = {"run_id": "r", "model_id": "m", "prompt_version": "p", "created_at": NOW}


def _row(page, answer, question="q", task="docvqa", **kw):
    return dict({"doc_id": "d", "source_uri": "u", "page_index": page, "page_count": 4, "question": question,
                 "answer_json": json.dumps(answer) if answer is not None else None, "valid": answer is not None,
                 "error_kind": None if answer is not None else "render_timeout", "error": None, "task": task,
                 "answer_text": (answer or {}).get("answer") if isinstance(answer, dict) else None,
                 "answer_number": None, "answer_unit": None, "confidence": 0.5 + page / 10,
                 "answer_boxes": [{"x0": 0.1, "y0": 0.1 * page, "x1": 0.2, "y1": 0.1 * page + 0.05}],
                 "grounded": True, "value_details": [], "model_id": "m", "prompt_version": "p"}, **kw)


def test_document_answer_is_the_earliest_page_of_the_majority_with_its_confidence_and_place():
    task = get_task("docvqa")
    rows = [_row(0, {"answer": "x"}), _row(1, {"answer": "Y"}), _row(2, {"answer": "y "}),
            _row(3, {"answer": "unanswerable"})]
    (doc,) = document_rows(task, rows, BASE)
    assert (doc["answer_text"], doc["page_index"], doc["pages_agreeing"], doc["pages_answered"]) == ("Y", 1, 2, 3)
    assert doc["confidence"] == 0.6 and doc["answer_boxes"][0]["y0"] == 0.1 and doc["status"] == "ok"
    DOCUMENT_TABLE.table([doc])
    failed_page = _row(2, None, question=None)
    (doc,) = document_rows(task, rows[:2] + [failed_page], BASE)
    assert doc["status"] == "partial" and doc["error_kinds"] == ["render_timeout"]


def test_fields_roll_up_field_by_field_into_typed_columns():
    task = get_task("fields", TaskSpec(name="fields", fields_schema="receipt"))
    answers = [{"total": 12.5, "merchant": None}, {"total": 12.5, "merchant": "Cafe"}, {"total": "99,00 EUR"}]
    rows = [_row(i, a, question=None, task="fields",
                 value_details=[{"path": k, "confidence": 0.9 - i / 10, "boxes": None, "grounded": None} for k in a])
            for i, a in enumerate(answers)]
    (doc,) = document_rows(task, rows, BASE, task.convert)
    assert json.loads(doc["answer_json"])["merchant"] == "Cafe" and doc["total"] == 12.5
    details = {d["field"]: d for d in doc["field_details"]}
    assert (details["total"]["page_index"], details["total"]["pages_agreeing"]) == (0, 2)
    assert details["merchant"]["page_index"] == 1 and doc["token_confidence"] == pytest.approx(0.8)
    # the row's confidence: the least confident page it took a field from (pages 0 and 1: 0.5 and 0.6)
    assert doc["confidence"] == pytest.approx(0.5)


def test_the_document_row_counts_the_rows_that_need_review():
    task = get_task("docvqa")
    rows = [_row(0, {"answer": "x"}, needs_review=True), _row(1, {"answer": "Y"}, needs_review=False),
            _row(2, {"answer": "y"}, needs_review=False), _row(3, None, needs_review=True)]
    (doc,) = document_rows(task, rows, BASE)
    assert (doc["page_index"], doc["needs_review"], doc["needs_review_rows"]) == (1, False, 2)
    (doc,) = document_rows(task, [_row(0, None, needs_review=True)], BASE)  # no answer: it needs a look
    assert (doc["needs_review"], doc["needs_review_rows"]) == (True, 1)
    (doc,) = document_rows(task, [_row(0, {"answer": "x"}, needs_review=True)], BASE)
    assert doc["needs_review"] is True
    (doc,) = document_rows(task, [_row(0, {"answer": "x"})], BASE)  # the job has no threshold
    assert doc["needs_review"] is None and doc["needs_review_rows"] is None
    DOCUMENT_TABLE.table([doc])


def test_a_page_written_twice_is_committed_once():
    from pipeline.commit.commit import _once

    rows = [{"page_index": 0, "path": "b", "q": 1}, {"page_index": 0, "path": "a", "q": 1},
            {"page_index": 1, "path": "b", "q": 1}, {"page_index": None, "path": "c", "q": 1}]
    kept, superseded = _once(rows)
    assert [(r["page_index"], r["path"]) for r in kept] == [(0, "a"), (1, "b"), (None, "c")]
    assert superseded == [("b", 0)]
