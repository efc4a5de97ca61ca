from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.cli import build_parser, load_from_args
from pipeline.core.config import load_spec, parse_override

REPO = Path(__file__).resolve().parents[1]


def test_shipped_job_specs_validate():
    for path in sorted((REPO / "jobs").glob("*.yaml")):
        spec = load_spec(path)
        assert spec.engine.temperature == 0.15, path
        assert spec.render.max_side <= 1540


def test_cli_flags_and_set_override_the_spec(tmp_path):
    args = build_parser().parse_args([
        "run", str(REPO / "jobs/docvqa.yaml"), "--input", "a", "--input", "b/*.pdf", "--output", "s3://bkt/out",
        "--model", "/models/m", "--run-id", "nightly-1", "--set", "engine.max_model_len=8192",
        "--set", "render.dpi=100", "--question", "Who signed?",
    ])
    spec = load_from_args(args)
    assert spec.input.paths == ["a", "b/*.pdf"]
    assert spec.output.path == "s3://bkt/out"
    assert spec.engine.model == "/models/m"
    assert spec.engine.max_model_len == 8192
    assert spec.render.dpi == 100
    assert spec.output.run_id == "nightly-1"
    assert spec.task.questions == ["Who signed?"]


def test_unknown_keys_and_bad_values_are_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine:\n  concurrenccy: 2\n")
    with pytest.raises(ValidationError, match="concurrenccy"):
        load_spec(bad)
    with pytest.raises(ValidationError):
        load_spec(None, [("render.max_side", 4000)])  # Pixtral's limit is 1540
    with pytest.raises(ValidationError, match="run_id"):
        load_spec(None, [("output.run_id", "../escape")])


def test_parse_override_reads_yaml_values():
    assert parse_override("engine.concurrency=2") == ("engine.concurrency", 2)
    assert parse_override("task.questions=[a, b]") == ("task.questions", ["a", "b"])
    assert parse_override("engine.quantization=fp8") == ("engine.quantization", "fp8")
    with pytest.raises(ValueError):
        parse_override("no-equals")


def test_run_id_defaults_unique_and_password_redacted():
    a, b = load_spec(None), load_spec(None)
    assert a.output.run_id != b.output.run_id
    spec = load_spec(None, [("input.pdf_password", "hunter2")])
    assert "hunter2" not in str(spec.redacted()) and "hunter2" not in repr(spec)


def test_engine_feeding_and_timeout_settings():
    spec = load_spec(None, [("engine.max_concurrent_batches", 2), ("engine.request_timeout_s", None)])
    assert spec.engine.max_concurrent_batches == 2 and spec.engine.request_timeout_s is None
    for key, bad in [("engine.max_concurrent_batches", 0), ("engine.request_timeout_s", 0)]:
        with pytest.raises(ValidationError):
            load_spec(None, [(key, bad)])


def test_dummy_weights_are_labelled_on_every_row():
    from pipeline.core.config import EngineSpec
    from pipeline.engine.model import model_label
    from pipeline.engine.actor import engine_args

    spec = EngineSpec(model="/models/mistral-small-3.2", load_format="dummy")
    assert "random weights" in model_label(spec) and "meaningless" in model_label(spec)
    assert engine_args(spec, "cuda")["load_format"] == "dummy"
    assert model_label(EngineSpec(model="/models/mistral-small-3.2")) == "/models/mistral-small-3.2"


def test_a_reader_folder_brings_the_page_size_it_was_trained_at_unless_the_job_sets_one():
    from pipeline.core.config import load_spec
    from pipeline.engine.model import apply_folder_render

    reader = str(Path(__file__).resolve().parents[1] / "models" / "tiny-reader")
    spec = load_spec(None, [("engine.model", reader)])
    apply_folder_render(spec)
    assert (spec.render.max_side, spec.render.dpi) == (560, 72)
    spec = load_spec(None, [("engine.model", reader), ("render.max_side", 700)])
    apply_folder_render(spec)
    assert (spec.render.max_side, spec.render.dpi) == (700, 72)  # what the job sets wins
    spec = load_spec(None, [("engine.model", "mistralai/Mistral-Small-3.2-24B-Instruct-2506")])
    apply_folder_render(spec)
    assert spec.render.max_side == 1540  # any other model: the defaults
