"""The training twin of vLLM's PixtralForConditionalGeneration (Mistral Small 3.2's architecture),
in plain PyTorch, with the Mistral consolidated-format parameter names vLLM loads
(load_format=mistral, config_format=mistral).

Read off vLLM 0.32's model_executor/models/pixtral.py and mistral.py:
- vision encoder: patch_conv (14 px, no bias) -> ln_pre (RMSNorm 1e-5) -> blocks of
  [attention_norm -> wq/wk/wv + 2D RoPE (complex pairs, rows on the even and columns on the odd
  frequencies, table of image_size // patch_size per side) -> full attention -> wo] and
  [ffn_norm -> w2(silu(w1 x) * w3 x)], pre-norm residuals;
- pre_mm_projector_norm (RMSNorm 1e-5) -> patch_merger (2x2 unfold, channel order (d, kh, kw)) ->
  vision_language_adapter w_out(gelu(w_in x)) (exact GELU, bias per adapter_bias);
- text decoder: Mistral (Llama) blocks with RMSNorm norm_eps, GQA (query head h reads kv head
  h // (n_heads / n_kv_heads)), SiLU-gated FFN and RoPE in the mistral-inference form: q/k channel
  pairs (2i, 2i+1) rotated as complex numbers. vLLM permutes wq/wk at load to its half-split
  (neox) rotary, which is the same function; so these weights are saved as they are.
- the image's features replace the embeddings of the [IMG] tokens only, in row-major order;
  [IMG_BREAK] and [IMG_END] keep their own token embeddings.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VisionArgs:
    hidden_size: int = 256
    num_channels: int = 3
    max_image_size: int = 1540
    image_size: int = 1540
    patch_size: int = 14
    rope_theta: float = 10000.0
    intermediate_size: int = 1024
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    adapter_bias: bool = False
    mm_projector_id: str = "patch_merge"
    spatial_merge_size: int = 2
    add_pre_mm_projector_layer_norm: bool = True
    image_token_id: int = 10
    image_break_token_id: int = 12
    image_end_token_id: int = 13


@dataclass
class ModelArgs:
    dim: int = 256
    n_layers: int = 4
    head_dim: int = 64  # vLLM's CPU attention wants 64 or more in the text model
    hidden_dim: int = 768
    n_heads: int = 4
    n_kv_heads: int = 2
    rope_theta: float = 1_000_000.0
    norm_eps: float = 1e-5
    vocab_size: int = 4096
    max_position_embeddings: int = 8192
    vision_encoder: VisionArgs = field(default_factory=VisionArgs)

    def params_json(self) -> dict:
        """params.json as Mistral ships it (the keys pipeline/engine/model.py writes)."""
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict) -> "ModelArgs":
        params = dict(params)
        vision = VisionArgs(**params.pop("vision_encoder"))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in params.items() if k in known}, vision_encoder=vision)


TINY = ModelArgs(dim=128, n_layers=2, head_dim=64, hidden_dim=256, n_heads=2, n_kv_heads=1,
                 vision_encoder=VisionArgs(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                           num_attention_heads=2))  # CPU smoke runs and the gates


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * self.weight.float()).to(x.dtype)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def rotate(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """x (B, T, H, hd) with channel pairs (2i, 2i+1) as complex numbers, times freqs_cis (T, hd/2)."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs_cis[None, :, None, :]).flatten(3).type_as(x)


def text_freqs_cis(head_dim: int, positions: int, theta: float) -> torch.Tensor:
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(positions).float(), freqs)
    return torch.polar(torch.ones_like(angles), angles)


def vision_freqs_cis(head_dim: int, side: int, theta: float) -> torch.Tensor:
    """vLLM's precompute_freqs_cis_2d: (side, side, head_dim / 2) complex."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    pos = torch.arange(side).float()
    freqs_h = torch.outer(pos, freqs[::2])
    freqs_w = torch.outer(pos, freqs[1::2])
    grid = torch.cat([freqs_h[:, None, :].repeat(1, side, 1), freqs_w[None, :, :].repeat(side, 1, 1)], dim=-1)
    return torch.polar(torch.ones_like(grid), grid)


class _FreqsCache:
    """complex64 RoPE tables per device, outside the module's buffers: Module.to(dtype) would cast
    complex buffers to real (dropping the imaginary part), and they are not weights."""

    def __init__(self, make):
        self.make, self.tables = make, {}

    def __call__(self, device: torch.device) -> torch.Tensor:
        if device not in self.tables:
            self.tables[device] = self.make().to(device)
        return self.tables[device]


class Attention(nn.Module):
    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, causal: bool):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim, self.causal = n_heads, n_kv_heads, head_dim, causal
        self.wq = nn.Linear(dim, n_heads * head_dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.wo = nn.Linear(n_heads * head_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim)
        q, k = rotate(q, freqs_cis), rotate(k, freqs_cis)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))
        if self.n_kv_heads != self.n_heads:
            group = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.wo(out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class Block(nn.Module):
    def __init__(self, dim, n_heads, n_kv_heads, head_dim, hidden, eps, causal):
        super().__init__()
        self.attention = Attention(dim, n_heads, n_kv_heads, head_dim, causal)
        self.attention_norm = RMSNorm(dim, eps)
        self.feed_forward = FeedForward(dim, hidden)
        self.ffn_norm = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), freqs_cis)
        return h + self.feed_forward(self.ffn_norm(h))


class _Layers(nn.Module):  # so the names read vision_encoder.transformer.layers.N...
    def __init__(self, blocks: list[Block]):
        super().__init__()
        self.layers = nn.ModuleList(blocks)


class VisionTransformer(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.args = a
        head_dim = a.hidden_size // a.num_attention_heads
        self.patch_conv = nn.Conv2d(a.num_channels, a.hidden_size, a.patch_size, a.patch_size, bias=False)
        self.ln_pre = RMSNorm(a.hidden_size, 1e-5)
        self.transformer = _Layers([Block(a.hidden_size, a.num_attention_heads, a.num_attention_heads, head_dim,
                                          a.intermediate_size, 1e-5, causal=False) for _ in range(a.num_hidden_layers)])
        self._freqs = _FreqsCache(lambda: vision_freqs_cis(head_dim, a.image_size // a.patch_size, a.rope_theta))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """images (B, C, H, W), all of one size -> patch features (B, h*w, D) row-major, and (h, w)."""
        x = self.patch_conv(images.to(self.patch_conv.weight.dtype))
        h, w = x.shape[-2:]
        x = self.ln_pre(x.flatten(2).transpose(1, 2))
        freqs = self._freqs(x.device)[:h, :w].reshape(h * w, -1)
        for layer in self.transformer.layers:
            x = layer(x, freqs)
        return x, (h, w)


class PatchMerger(nn.Module):
    def __init__(self, dim: int, merge: int):
        super().__init__()
        self.merge = merge
        self.merging_layer = nn.Linear(dim * merge * merge, dim, bias=False)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, _, d = x.shape
        grid = x.view(b, hw[0], hw[1], d).permute(0, 3, 1, 2)
        cols = F.unfold(grid, kernel_size=self.merge, stride=self.merge)  # (B, d*m*m, L): channel (d, kh, kw)
        return self.merging_layer(cols.transpose(1, 2))


class Adapter(nn.Module):
    def __init__(self, vision_dim: int, dim: int, bias: bool):
        super().__init__()
        self.w_in = nn.Linear(vision_dim, dim, bias=bias)
        self.w_out = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_out(F.gelu(self.w_in(x)))


class TinyReader(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        v = args.vision_encoder
        assert v.mm_projector_id == "patch_merge" and v.add_pre_mm_projector_layer_norm
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList([Block(args.dim, args.n_heads, args.n_kv_heads, args.head_dim, args.hidden_dim,
                                           args.norm_eps, causal=True) for _ in range(args.n_layers)])
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.vision_encoder = VisionTransformer(v)
        self.pre_mm_projector_norm = RMSNorm(v.hidden_size, 1e-5)
        self.patch_merger = PatchMerger(v.hidden_size, v.spatial_merge_size)
        self.vision_language_adapter = Adapter(v.hidden_size, args.dim, v.adapter_bias)
        self._freqs = _FreqsCache(lambda: text_freqs_cis(args.head_dim, args.max_position_embeddings, args.rope_theta))
        self.reset_parameters()

    def reset_parameters(self, std: float | None = None) -> None:
        """Every matrix at 1/sqrt(fan_in) (the residual branches' outputs, wo and w2, also scaled by
        1/sqrt(2 x layers)), token embeddings at 1/sqrt(dim), norms at 1. A fixed std of 0.02 left
        patch_conv (fan-in 588), the merger (1,024) and the adapter 3-4x too small: the image came
        out no larger than a text embedding, and the model learned to read nothing. `std` sets every
        matrix to that one std instead (check_vllm_parity's strongly random model)."""
        def init(module: nn.Module, name: str) -> None:
            if isinstance(module, nn.Embedding):
                scale = std if std is not None else module.weight.shape[1] ** -0.5
            else:
                fan_in = module.weight[0].numel()  # Linear (out, in); Conv2d (out, in, kh, kw)
                scale = std if std is not None else fan_in ** -0.5
                if std is None and name.endswith((".wo", ".w2")):
                    layers = self.args.vision_encoder.num_hidden_layers if "vision_encoder" in name else self.args.n_layers
                    scale /= (2 * layers) ** 0.5
            nn.init.normal_(module.weight, 0.0, scale)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

        for name, module in self.named_modules():
            if isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
            elif isinstance(module, (nn.Linear, nn.Conv2d, nn.Embedding)):
                init(module, name)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, number of [IMG] tokens, dim), in the order of the [IMG] tokens."""
        x, hw = self.vision_encoder(images)
        x = self.patch_merger(self.pre_mm_projector_norm(x), hw)
        return self.vision_language_adapter(x)

    def hidden_states(self, tokens: torch.Tensor, images: torch.Tensor, seq_image: torch.Tensor,
                      features: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (S, T), right-padded; images (B, C, H, W); seq_image (S,): the image of each sequence.
        `features`: image_features(images) if the caller has them already (the reading loss uses them)."""
        h = self.tok_embeddings(tokens)
        feats = (self.image_features(images) if features is None else features)[seq_image]  # (S, L, dim)
        mask = tokens == self.args.vision_encoder.image_token_id
        if not self.training:  # (a GPU sync: training batches are checked when they are made)
            assert bool((mask.sum(1) == feats.shape[1]).all()), "each sequence needs exactly its image's [IMG] tokens"
        h = h.masked_scatter(mask.unsqueeze(-1), feats.to(h.dtype))
        freqs = self._freqs(h.device)[: tokens.shape[1]]
        for layer in self.layers:
            h = layer(h, freqs)
        return h

    def logits(self, tokens: torch.Tensor, images: torch.Tensor, seq_image: torch.Tensor) -> torch.Tensor:
        return self.output(self.norm(self.hidden_states(tokens, images, seq_image)))

    def token_losses(self, tokens, images, seq_image, label_index, targets,
                     features=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy of each target, the target's logits' argmax) at the flat positions
        `label_index` of (S, T), whose next tokens are `targets` (index lists made on the CPU:
        boolean masks here would sync the GPU)."""
        h = self.hidden_states(tokens, images, seq_image, features)
        h = h.reshape(-1, h.shape[-1]).index_select(0, label_index)
        logits = self.output(self.norm(h)).float()
        return F.cross_entropy(logits, targets, reduction="none"), logits.argmax(-1)

    def loss(self, tokens, images, seq_image, label_index, targets, weights=None,
             features=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of token_losses, and how many targets are the argmax; `weights` (one
        per target) make it a weighted mean."""
        each, argmax = self.token_losses(tokens, images, seq_image, label_index, targets, features)
        loss = each.mean() if weights is None else (each * weights).sum() / weights.sum()
        return loss, (argmax == targets).sum()

    @torch.no_grad()
    def greedy(self, prompt: list[int], image: torch.Tensor, max_new: int,
               eos: int) -> tuple[list[int], list[torch.Tensor]]:
        """Greedy continuation of one prompt (no KV cache: for checks); also each step's log-probs."""
        tokens, logprobs = list(prompt), []
        zero = torch.zeros(1, dtype=torch.long, device=image.device)
        for _ in range(max_new):
            t = torch.tensor([tokens], device=image.device)
            lp = torch.log_softmax(self.logits(t, image[None], zero)[0, -1].float(), -1)
            logprobs.append(lp.cpu())
            tokens.append(int(lp.argmax()))
            if tokens[-1] == eos:
                break
        return tokens[len(prompt):], logprobs
