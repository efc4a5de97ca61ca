"""The model as the engine loads it and the rows name it: `build` writes a weightless Mistral Small
3.2 folder (params.json + tekken.json) for vLLM (`docintel demo-model`), `demo_info` recognises one,
and `model_label` is the model id every row carries.

vLLM loads it with load_format="dummy": the real architecture (Mistral3 text model + Pixtral
vision encoder), random weights. `tiny=True` shrinks every dimension so it runs on a laptop CPU
in seconds; the full size gives the real model's shapes and speed on a GPU. Either way the
answers are noise: this is for tests, demos and benchmarks, never for results.

A folder written here carries DEMO_MARKER; the engine sees it, loads dummy weights, and every
output row names the model as a random-weight demo.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from pipeline.core import envs

DEMO_MARKER = "docintel_demo_model.json"
READER_MARKER = "docintel_model.json"  # tools/reader/export.py: trained weights (load_format mistral)

# Mistral-Small-3.2-24B-Instruct-2506 as published (params.json of the hub repo).
_TEXT = dict(dim=5120, n_layers=40, head_dim=128, hidden_dim=32768, n_heads=32, n_kv_heads=8,
             rope_theta=1_000_000_000.0, norm_eps=1e-5, vocab_size=131072, max_position_embeddings=131072)
_VISION = dict(hidden_size=1024, num_channels=3, max_image_size=1540, image_size=1540, patch_size=14,
               rope_theta=10000.0, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
               adapter_bias=False, mm_projector_id="patch_merge", spatial_merge_size=2,
               add_pre_mm_projector_layer_norm=True, image_token_id=10, image_break_token_id=12,
               image_end_token_id=13)
# Tiny: the CPU attention kernels reject head_dim 16 in the text model, so it keeps 64.
_TINY_TEXT = dict(dim=256, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=64, hidden_dim=512)
_TINY_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _tekken_source() -> Path:
    """The tekken tokenizer that the mistral_common package ships (no download)."""
    env = envs.get("TEKKEN_SRC")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or spec.origin is None:
        raise RuntimeError("mistral_common is not installed (it comes with vLLM); or set TEKKEN_SRC")
    path = Path(spec.origin).parent / "data" / "tekken_240911.json"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; set TEKKEN_SRC to a tekken.json")
    return path


def build(out: str | os.PathLike, tiny: bool = True) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text, vision = dict(_TEXT), dict(_VISION)
    if tiny:
        text.update(_TINY_TEXT)
        vision.update(_TINY_VISION)
    params = dict(text, vision_encoder=vision)
    (out / "params.json").write_text(json.dumps(params, indent=1))
    tokenizer = json.loads(_tekken_source().read_text())
    tokenizer["image"] = {"image_patch_size": 14, "max_image_size": 1540, "spatial_merge_size": 2}
    (out / "tekken.json").write_text(json.dumps(tokenizer))
    (out / DEMO_MARKER).write_text(json.dumps({
        "random_weights": True,
        "size": "tiny" if tiny else "full",
        "note": "Mistral Small 3.2 architecture with random weights: answers are meaningless.",
    }, indent=1))
    return out


def demo_info(model: str) -> dict | None:
    """The marker's content if `model` is a folder written by build(), else None."""
    marker = Path(model) / DEMO_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def max_positions(model: str) -> int | None:
    """max_position_embeddings of a local Mistral-format folder (params.json), else None (a hub id)."""
    params = Path(model) / "params.json"
    return json.loads(params.read_text()).get("max_position_embeddings") if params.is_file() else None


def reader_info(model: str) -> dict | None:
    """The marker's content if `model` is a tiny reader exported by tools/reader/export.py, else None."""
    marker = Path(model) / READER_MARKER
    info = json.loads(marker.read_text()) if marker.is_file() else None
    return info if info and info.get("kind") == "tiny-reader" else None


def apply_folder_render(spec) -> None:
    """A tiny reader folder declares the page size it was trained at (docintel_model.json "render":
    max_side 560 at 72 dpi, where a digit is about one patch); a job (spec: JobSpec) that sets neither
    itself gets them, so `--model models/tiny-reader` reads as the reader was trained. What the job
    sets wins."""
    info = reader_info(spec.engine.model)
    for key, value in ((info or {}).get("render") or {}).items():
        if key not in spec.render.model_fields_set:
            setattr(spec.render, key, value)


def model_label(spec) -> str:
    """The model id written to every row (spec: EngineSpec); random weights (demo model,
    load_format=dummy), the tiny test reader and a stand-in engine (engine.backend) say what they are."""
    label = _weights_label(spec)
    return label if spec.backend == "vllm" else f"{label} [engine double {spec.backend}: not a model's answers]"


def _weights_label(spec) -> str:
    if reader_info(spec.model) is not None:
        return f"{spec.model} [tiny test reader trained on generated pages: not a document model]"
    info = demo_info(spec.model)
    if info:
        return f"{spec.model} [random weights, {info.get('size', 'tiny')}: answers are meaningless]"
    if spec.load_format == "dummy":
        return f"{spec.model} [load_format=dummy, random weights: answers are meaningless]"
    return spec.model
