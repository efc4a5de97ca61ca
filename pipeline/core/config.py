"""The job spec: one typed object, loaded from YAML, every field overridable from the CLI.

A spec file mirrors `JobSpec` field by field; `--set engine.concurrency=2` (dotted path, YAML
value) or the short flags of the CLI (`--input`, `--output`, `--model`, ...) override it.
Unknown keys are errors, so a typo in a nightly spec fails before any GPU time is spent.
"""
from __future__ import annotations

import datetime as _dt
import re
import uuid
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_MODEL = "mistralai/Mistral-Small-3.2-24B-Instruct-2506"
# Pixtral's hard limit: the vision encoder never sees a side longer than this.
MAX_IMAGE_SIDE = 1540


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputSpec(_Strict):
    paths: list[str] = Field(default_factory=list, description="Files, folders (searched recursively) or globs.")
    manifest: str | None = Field(None, description="JSONL/CSV/YAML listing documents and, optionally, questions.")
    extensions: list[str] = Field(
        default_factory=lambda: [".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"],
        description="Suffixes picked up when a folder is listed (a file named explicitly is always taken).",
    )
    allowed_roots: list[str] = Field(
        default_factory=list,
        description="Manifest entries must lie inside one of these: local folders (after resolving '..' and "
                    "symlinks) or URI prefixes such as s3://bucket/prefix (same scheme and bucket, at a '/' "
                    "boundary). Default: the manifest's folder, so URI entries are refused.",
    )
    max_file_bytes: int = Field(512 * 1024 * 1024, gt=0, description="Larger files get an error row, unread.")
    pdf_password: str | None = Field(None, description="Password for the owner's encrypted PDFs.", repr=False)


class TaskSpec(_Strict):
    name: str = Field("docvqa", description="A task module in pipeline/tasks/ (docvqa, ...).")
    questions: list[str] = Field(
        default_factory=list, description="Default questions, asked of every page without its own."
    )
    # 'together' measured 1.2x (1024 px) to 1.8x (1540 px) faster on an H100: bench/RESULTS.md.
    question_mode: Literal["each", "together"] = Field(
        "together", description="Several questions on a page: one request with an array answer, or one each.")
    questions_per_request: int | None = Field(
        None, ge=1, description="question_mode together: at most this many questions in one request; a page "
                                "with more gets several requests (None: all in one). Long grouped prompts are "
                                "harder for a model: the tiny reader's chartqa, bench/RESULTS.md.")
    fields_schema: str | dict[str, Any] | None = Field(
        None, description="Task fields: schema file, shipped name (invoice, receipt) or inline schema.")
    max_tokens: int = Field(256, gt=0, description="Output token limit for one answer.")
    retry_max_tokens: int = Field(1024, gt=0, description="Limit for the one retry of an answer cut off by length.")


class EngineSpec(_Strict):
    model: str = Field(DEFAULT_MODEL, description="Hub id or local folder. Weights load only from here.")
    device: Literal["auto", "cuda", "cpu"] = "auto"
    tensor_parallel_size: int = Field(1, ge=1)
    concurrency: int = Field(1, ge=1, description="Engine replicas (Ray actors), each tensor_parallel_size GPUs.")
    max_model_len: int = Field(16384, ge=1024)
    max_num_batched_tokens: int = Field(4096, ge=512)
    # 256 measured best on one H200 (bench/RESULTS.md, 2026-11-29): 9.2-9.6 pages/s raw vs 6.7 at 64.
    max_num_seqs: int = Field(256, ge=1, description="Sequences the engine decodes together.")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    dtype: str = "bfloat16"
    quantization: str | None = None
    load_format: str | None = Field(None, description="Default: 'mistral' for real weights, 'dummy' for the demo model.")
    config_format: str = Field("mistral", description="How vLLM reads the model's config: 'mistral' "
                               "(params.json, as the model card says) or 'hf'.")
    enforce_eager: bool = False
    temperature: float = Field(0.15, ge=0.0)
    seed: int | None = 0
    system_prompt: str | None = Field(
        None,
        description="Text or @path. Default: the model's SYSTEM_PROMPT.txt when the model folder ships one.",
    )
    batch_size: int | None = Field(
        None, ge=1, description="Pages Ray hands an engine actor at a time (default: derived, see actor_queue).")
    max_concurrent_batches: int | None = Field(
        None, ge=1, description="Batches one engine actor works on at once: the next batch prefills while the "
                                "last one's tail decodes (pipeline/engine/loop.py). Default: derived.")
    admit_limit: int | None = Field(
        None, ge=0, description="Requests in the engine at once (running and waiting); the rest enter oldest "
                                "batch first (pipeline/engine/loop.py). Default: max_num_seqs and a quarter more. "
                                "0: every request enters as soon as it is rendered.")
    request_timeout_s: float | None = Field(
        600.0, gt=0, description="A request with no answer this long after it entered the engine is "
                                 "aborted; its rows get error_kind engine_error (None: no limit).")
    step_timeout_s: float = Field(
        60.0, gt=0, description="One engine step (a forward pass) that does not return this long while the "
                                "engine core does no work means a stopped or wedged engine: the actor restarts and "
                                "its work is retried. A step that is slow while the core computes fails at 5x this.")
    logprobs: bool = Field(True, description="Ask for the sampled tokens' log-probabilities: each answer's "
                           "confidence comes from them.")
    cpu_kvcache_gib: int = Field(1, ge=1, description="KV cache of the CPU backend (demo/tests).")
    separate_core: bool = Field(
        True, description="vLLM's engine core in a process of its own under the actor: a core that crashes "
                          "or hangs is seen, reported and killed by the actor (engine_health.py). False runs it "
                          "in the actor's process, which starts in half the time on a CPU (one process imports "
                          "torch and vLLM instead of three) but turns an engine crash into an actor death.")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Passed to vllm.LLM as is (last word).")
    backend: str = Field(
        "vllm", description="What answers: 'vllm' (the model), or 'module:Class', a stand-in built with the engine "
                            "spec in its place, such as the tests' engine double (tests/engine_double.py); it must be "
                            "importable where the engine runs, so a deployment without the tests cannot build it. "
                            "Every row's model_id names a stand-in as one, and so does the run's identity.")

    def seqs(self, device: str) -> int:
        """max_num_seqs as the engine gets it: the CPU backend (tests, demo) keeps a small batch."""
        return min(self.max_num_seqs, 16) if device == "cpu" else self.max_num_seqs

    def admitted(self, device: str) -> int | None:
        """Requests the engine loop lets into the engine at once (None: no limit). Default: max_num_seqs
        running and a quarter as many waiting, so the scheduler has the next prompts to prefill as
        sequences finish; the rest wait in the loop in batch order (pipeline/engine/loop.py says why)."""
        if self.admit_limit is not None:
            return self.admit_limit or None
        seqs = self.seqs(device)
        return seqs + max(1, seqs // 4)

    def actor_queue(self, requests_per_page: int, device: str = "cuda") -> tuple[int, int]:
        """(pages per batch, batches in flight) of one engine actor. Unless set, derived so that an
        actor holds at least twice max_num_seqs requests across its batches: the engine always has
        the next sequences waiting when some finish (measured: bench/RESULTS.md, issue "Keep the
        H200 busy"), and nobody has to tune these two by hand."""
        batches = self.max_concurrent_batches or 8
        if self.batch_size:
            return self.batch_size, batches
        need = 2 * self.seqs(device)
        return max(1, -(-need // (batches * max(1, requests_per_page)))), batches


class AnswersSpec(_Strict):
    calibration: str | None = Field(
        None, description="calibration.json that `docintel eval` wrote for this task: `confidence` on the scale "
                          "it measured (pipeline/answers/calibration.py); none: the uncalibrated score.")
    review_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Rows whose confidence is under this (or that have no valid answer) get "
                                          "needs_review=true. Default: the threshold the calibration proposes; "
                                          "with neither, needs_review is null.")


class BlankPageSpec(_Strict):
    """The gate that keeps pages with nothing to read from the engine (pipeline/ingest/blank.py says
    what counts; bench/RESULTS.md, "Blank pages", has the measured margins)."""

    enabled: bool = Field(True, description="Pages with nothing to read get blank_page rows and no engine time.")
    max_ink: float = Field(1.5e-4, ge=0, le=1, description="A page whose marks (ink other than straight strokes "
                           "such as a staple) cover at most this share of it, and whose text layer holds nothing "
                           "but a page number, has nothing to read.")
    min_contrast: int = Field(24, ge=1, le=255, description="Grey levels a pixel must differ from the paper "
                              "around it to be ink (more where the page is noisier).")
    margin: float = Field(0.04, ge=0, lt=0.5, description="Share of each side not looked at (a scanner's lid "
                          "edge and shadow).")


class RenderSpec(_Strict):
    dpi: int = Field(150, ge=36, le=600)
    max_side: int = Field(1540, ge=64, le=MAX_IMAGE_SIDE, description="Longest side in pixels after rendering.")
    max_pages: int = Field(500, ge=1, description="Pages past this get one error row per document.")
    max_pixels: int = Field(40_000_000, ge=1, description="Source pixels of an image page before scaling (bomb guard).")
    page_timeout_s: float = Field(60.0, gt=0, description="A page that renders longer is abandoned with an error row.")
    keep_text: bool = Field(True, description="Keep the PDF text layer in the page row.")
    image_format: Literal["png", "jpeg"] = "png"
    blank_page: BlankPageSpec = Field(default_factory=BlankPageSpec, description="Pages with nothing to read: "
                                      "blank_page rows, no engine time (enabled: false sends every page).")


class OutputSpec(_Strict):
    path: str = Field("./out", description="Folder or URI; each run writes OUTPUT/run_id=RUN_ID/.")
    run_id: str | None = Field(None, description="Default: UTC time + short random suffix.")
    pages_per_file: int = Field(512, ge=1, description="Pages per data file: answered pages reach disk in files "
                                "of this many as the job runs (a driver that dies loses at most the pages "
                                "in flight).")
    resume: bool = Field(False, description="Finish the unfinished run output.run_id: skip documents it wrote.")
    incremental: bool = Field(
        False, description="Skip documents whose content (hash) a committed run in this output already did.")

    @field_validator("run_id")
    @classmethod
    def _safe_run_id(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", v):
            raise ValueError("run_id: letters, digits, '.', '_' and '-' only (it names a folder)")
        return v


class StorageSpec(_Strict):
    """Object storage settings. Credentials are never here: they come from the standard AWS chain
    (environment, profile, instance or IRSA role) of each process."""

    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph, R2), e.g. http://minio:9000")
    region: str | None = None
    shared_filesystem: bool = Field(
        False, description="Local input/output paths are on a filesystem every node of the cluster mounts "
                           "at the same path (else they are refused on a cluster of several nodes).")

    def apply_env(self) -> None:
        """Export the settings where pyarrow and boto3 read them, for this process and Ray workers."""
        import os

        if self.endpoint_url:
            os.environ["AWS_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL_S3"] = self.endpoint_url
        if self.region:
            os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"] = self.region


class RaySpec(_Strict):
    address: str | None = Field(None, description="Ray address; default: the running cluster or a new local one.")
    progress_bars: bool = Field(False, description="Ray Data's own progress bars (one line per stage) "
                                "besides docintel's progress line.")
    verbose: bool = Field(False, description="vLLM's and Ray's logs in the terminal; otherwise they go to the "
                          "Ray session's log folder, which the summary names.")
    engine_start_attempts: int = Field(
        3, ge=1, description="Engine starts that may fail in a row (before it is ever ready) before the job "
                             "stops, not committed (exit code 4).")
    max_restarts_without_progress: int = Field(
        5, ge=0, description="Engine restarts with no page answered in between before the job stops, not "
                             "committed (exit code 4); --resume finishes it later.")
    max_errored_blocks: int = Field(
        -1, description="Blocks Ray Data may lose before the job fails (-1: no limit; lost work gets "
                        "not_processed rows, see pipeline/commit/accounting.py).")
    health_poll_s: float = Field(2.0, gt=0, description="How often the driver reads the engines' health ledger.")
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, description="Added to the job's Ray runtime env (Ray's own keys: env_vars, pip, "
                                          "worker_process_setup_hook, ...); its env_vars win over the forwarded "
                                          "settings. The Ray dashboard shows it: a secret-looking env var is "
                                          "refused (core/envs.py).")

    @field_validator("runtime_env")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        from pipeline.core.envs import is_secret

        secrets = sorted(k for k in (value.get("env_vars") or {}) if is_secret(k))
        if secrets:
            raise ValueError(f"ray.runtime_env.env_vars {', '.join(secrets)}: the Ray dashboard shows the runtime "
                             "env; give the workers credentials through their own environment")
        return value
    # Ray 2.60's defaults are built for clusters and cost a small machine dearly: each read_parquet
    # starts 32 footer-reading actors (32 worker processes), and the hash shuffle of the commit's
    # group-by starts aggregator actors. On 2 cores the commit of 8 rows took 38 s, 9 s with these.
    parquet_footer_actors: int = Field(
        4, ge=1, description="Actors Ray Data starts to read Parquet footers at each read_parquet (Ray's "
                             "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS, default 32), each reading 128 at a time.")
    shuffle_strategy: Literal["sort_shuffle_pull_based", "sort_shuffle_push_based", "hash_shuffle", "shuffle_v2"] = \
        Field("sort_shuffle_pull_based", description="Ray Data's shuffle for the commit's group-by by document: "
                                                     "tasks (sort_*), or aggregator actors (hash_shuffle, shuffle_v2: "
                                                     "Ray 2.60's default).")


class JobSpec(_Strict):
    name: str = "docintel"
    input: InputSpec = Field(default_factory=InputSpec)
    task: TaskSpec = Field(default_factory=TaskSpec)
    engine: EngineSpec = Field(default_factory=EngineSpec)
    answers: AnswersSpec = Field(default_factory=AnswersSpec)
    render: RenderSpec = Field(default_factory=RenderSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    ray: RaySpec = Field(default_factory=RaySpec)

    @model_validator(mode="after")
    def _fill_run_id(self) -> "JobSpec":
        if self.output.run_id is None:
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            self.output.run_id = f"{stamp}-{uuid.uuid4().hex[:6]}"
        return self

    def redacted(self) -> dict[str, Any]:
        """The spec as a dict safe to log or store: secrets replaced."""
        data = self.model_dump(mode="json")
        if data["input"].get("pdf_password"):
            data["input"]["pdf_password"] = "***"
        return data


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """data['a']['b'] = value for dotted='a.b', creating the intermediate dicts."""
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ValueError(f"--set {dotted}: '{key}' is not a section")
    data[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'engine.concurrency=2' -> ('engine.concurrency', 2); the value is read as YAML."""
    if "=" not in text:
        raise ValueError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_spec(path: str | Path | None, overrides: list[tuple[str, Any]] = ()) -> JobSpec:
    """Read a YAML spec (or start from defaults), apply overrides, validate once."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: a job spec is a YAML mapping")
        data = loaded or {}
    for key, value in overrides:
        set_dotted(data, key, value)
    return JobSpec.model_validate(data)
