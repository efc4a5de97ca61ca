"""The tiny reader's model folder in the Mistral format vLLM loads (tokenizer_mode, config_format and
load_format all "mistral"), and reading it back into the torch model.

  params.json                 ModelArgs as Mistral writes it (text keys + vision_encoder)
  tekken.json                 mistral_common's tekken cut to the model's vocabulary, image section on
  consolidated.safetensors    bf16 weights under the consolidated names; above `shard_bytes` they are
                              split into consolidated-0000k-of-0000n.safetensors (vLLM globs
                              consolidated*.safetensors)
  docintel_model.json         marker: kind tiny-reader, the render settings it was trained for
No SYSTEM_PROMPT.txt: the reader is trained without a system prompt, as the pipeline then asks.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from tools.reader import data, pagegen
from tools.reader.model import ModelArgs, TinyReader

MARKER = "docintel_model.json"
SHARD_BYTES = 15 * 2**20  # files that come back from the GPU machine are limited to 16 MiB


def export(model: TinyReader, out: str | Path, extra: dict | None = None, shard_bytes: int = SHARD_BYTES) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("consolidated*.safetensors"):
        old.unlink()
    args = model.args
    (out / "params.json").write_text(json.dumps(args.params_json(), indent=1))
    data.write_tekken(out / "tekken.json", args.vocab_size)
    state = {k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    for k, shard in enumerate(shards, 1):
        name = ("consolidated.safetensors" if len(shards) == 1
                else f"consolidated-{k:05d}-of-{len(shards):05d}.safetensors")
        save_file(shard, str(out / name), metadata={"format": "pt"})
    marker = {"kind": "tiny-reader", "note": "test instrument trained on generated pages, not a document model",
              "render": dict(pagegen.RENDER), "parameters": sum(t.numel() for t in state.values())}
    marker.update(extra or {})
    (out / MARKER).write_text(json.dumps(marker, indent=1))
    return out


def load(folder: str | Path, dtype: torch.dtype = torch.float32) -> TinyReader:
    """The torch model with the folder's weights (bf16 as stored, then cast to `dtype`)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    model = TinyReader(ModelArgs.from_params(json.loads((folder / "params.json").read_text())))
    state = {}
    for path in sorted(folder.glob("consolidated*.safetensors")):
        state.update(load_file(str(path)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not match the model: missing {missing}, unexpected {unexpected}")
    return model.to(dtype).eval()
