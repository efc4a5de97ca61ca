"""A stand-in for vLLM's engine, for the tests whose subject is not the engine: commit, resume, S3,
incremental bookkeeping and the feeding of the engine. A job selects it with
`--set engine.backend=engine_double:EngineDouble` (tests/faults_plugin.py adds that, and its step time
as `engine.engine_kwargs`, when a test sets DOCINTEL_FAULTS {"engine": ...}); it needs tests/ on the
engine actor's path, and runs in its process: no torch, no vLLM, no start-up.

It speaks the part of vllm.LLM / LLMEngine that pipeline/engine/loop.py uses (`enqueue_chat`,
`llm_engine.step`, `has_unfinished_requests`, `abort_request`) and answers every request with the
smallest JSON value its schema accepts (strings say "engine double"), cut at the request's
max_tokens like a real engine. Each step sleeps `step_s` and finishes every request that has been
in the engine for `steps` steps (default 1), so a test can make a run last long enough for a kill
to land mid-run. Token counts: the image's tokens as the model would count them plus the text's;
each output piece has log-probability -0.01 (confidence is computed, about 0.99 per value).

The rows it produces say so: their model id reads "[engine double ...: not a model's answers]".
A real end-to-end run of every task stays with the real engine (tests/test_demo.py and others).
"""
from __future__ import annotations

import base64
import io
import json
import re
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

PIECE = 4  # characters per output token


def instance(schema: Any, root: dict | None = None) -> Any:
    """The smallest value `schema` accepts, for the keyword subset pipeline/tasks/_jsonschema.py allows
    (a `pattern` only as far as a few candidate strings or `examples` meet it)."""
    root = root if root is not None else schema
    if schema is True or schema == {}:
        return None
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return instance(target, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "examples" in schema and schema["examples"]:
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    if "anyOf" in schema:
        return instance(schema["anyOf"][0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: instance(sub, root) for name, sub in props.items()}
    if kind == "array":
        prefix = [instance(s, root) for s in schema.get("prefixItems", [])]
        n = max(schema.get("minItems", 0), len(prefix))
        return prefix + [instance(schema.get("items", {}), root) for _ in range(n - len(prefix))]
    if kind == "string":
        fmt = schema.get("format")
        text = {"date": "2026-12-04", "date-time": "2026-12-04T00:00:00Z"}.get(fmt, "engine double")
        if "pattern" in schema:  # a few candidates; else the answer is invalid, as a weak model's may be
            text = next((t for t in (text, "en", "a", "0") if re.search(schema["pattern"], t)), text)
        text = text.ljust(schema.get("minLength", 0), "x")
        return text[:schema["maxLength"]] if "maxLength" in schema else text
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = max(1, low + (1 if "exclusiveMinimum" in schema else 0))
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    return None


@dataclass
class _Request:
    request_id: str
    prompt_tokens: int
    text: str
    finish_reason: str
    steps_left: int


@dataclass
class _Output:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[Any]
    finished: bool = True


@dataclass
class _Logprob:
    logprob: float
    decoded_token: str


@dataclass
class EngineDouble:
    """vllm.LLM's shape, answering at once (after `steps` steps of `step_s` seconds)."""

    spec: Any = None
    step_s: float = 0.0
    steps: int = 1
    requests: dict[str, _Request] = field(default_factory=dict)
    counter: int = 0

    def __post_init__(self) -> None:
        self.llm_engine = self
        options = getattr(self.spec, "engine_kwargs", None) or {}  # the double's own settings
        self.step_s, self.steps = float(options.get("step_s", self.step_s)), int(options.get("steps", self.steps))

    @staticmethod
    def sampling_params(spec: Any, schema: dict[str, Any], max_tokens: int) -> Any:
        return SimpleNamespace(schema=schema, max_tokens=max_tokens)

    def enqueue_chat(self, messages: list, params: list, use_tqdm: bool = False) -> list[str]:
        from pipeline.tasks.prompts import image_token_count

        ids = []
        for conversation, param in zip(messages, params):
            tokens = 16
            for message in conversation:
                content = message["content"]
                for part in content if isinstance(content, list) else [{"type": "text", "text": content}]:
                    if part["type"] == "text":
                        tokens += len(part["text"]) // 3
                    else:
                        from PIL import Image

                        data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                        with Image.open(io.BytesIO(data)) as image:  # raises for a broken image, as vLLM does
                            tokens += image_token_count(*image.size)
            text = json.dumps(instance(param.schema), separators=(",", ":"))
            finish = "stop"
            if len(text) > PIECE * param.max_tokens:
                text, finish = text[:PIECE * param.max_tokens], "length"
            self.counter += 1
            request_id = f"{self.counter}-double00"
            self.requests[str(self.counter)] = _Request(request_id, tokens, text, finish, self.steps)
            ids.append(request_id)
        return ids

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    def step(self) -> list[_Output]:
        time.sleep(self.step_s)
        done = []
        for key, request in list(self.requests.items()):
            request.steps_left -= 1
            if request.steps_left <= 0:
                del self.requests[key]
                pieces = [request.text[i:i + PIECE] for i in range(0, len(request.text), PIECE)]
                completion = SimpleNamespace(
                    text=request.text, token_ids=list(range(len(pieces))), finish_reason=request.finish_reason,
                    logprobs=[{i: _Logprob(-0.01, piece)} for i, piece in enumerate(pieces)])
                done.append(_Output(key, list(range(request.prompt_tokens)), [completion]))
        return done

    def abort_request(self, request_ids: list[str], internal: bool = False) -> None:
        for request_id in request_ids:
            self.requests.pop(request_id.split("-", 1)[0], None)
