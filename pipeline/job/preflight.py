"""Checks before any work: is there a device for the engine, is the engine installed, and can every
node of the cluster see the input and output. Each failure is a UsageError that says what to do.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess

from pipeline.core.config import JobSpec
from pipeline.engine.model import demo_info, reader_info
from pipeline.store.storage import is_uri


class UsageError(RuntimeError):
    """A problem with the job or the machine, found before any work starts."""


def local_gpu_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listed.splitlines() if line.startswith("GPU "))


def demo_hint(spec: JobSpec) -> str:
    return (
        "To try the pipeline without a GPU, use the tiny random-weight demo model (same architecture, "
        "MEANINGLESS answers), or run `docintel demo`:\n"
        "    docintel demo-model ./demo-model\n"
        f"    docintel run JOB.yaml --input {' '.join(spec.input.paths) or 'DOCS'} "
        f"--output {spec.output.path} --model ./demo-model"
    )


def resolve_device(spec: JobSpec, gpus: float) -> str:
    """'cuda' or 'cpu' for the engine actors, given the GPUs there are, or UsageError."""
    engine = spec.engine
    if engine.device == "cpu":
        return "cpu"
    need = engine.tensor_parallel_size
    if gpus >= need:
        return "cuda"
    if engine.device == "auto" and (demo_info(engine.model) or reader_info(engine.model)) is not None:
        return "cpu"  # the demo model and the tiny reader run on a laptop's CPU
    raise UsageError(
        f"No GPU: there are {gpus:g} GPU(s) and engine.tensor_parallel_size={need} needs {need}. "
        f"{engine.model} needs about 55 GB of GPU memory in bf16 (one 80 GB H100/A100, or two GPUs "
        f"with --set engine.tensor_parallel_size=2).\n" + demo_hint(spec)
    )


def check_engine_installed() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise UsageError("vLLM is not installed: pip install -e '.[gpu]' on a GPU machine, or "
                         "bash scripts/install_cpu.sh for the CPU build (tests, demo model)")


def check_paths_on_cluster(spec: JobSpec, nodes: int) -> None:
    """On a cluster of several nodes a local path means each node's own disk: workers on other nodes
    would not see the driver's files (or would write where nobody looks)."""
    if nodes <= 1 or spec.storage.shared_filesystem:
        return
    local = [p for p in spec.input.paths if not is_uri(p)]
    if spec.input.manifest and not is_uri(spec.input.manifest):
        local.append(spec.input.manifest)
    if not is_uri(spec.output.path):
        local.append(spec.output.path)
    if local:
        raise UsageError(
            f"the Ray cluster has {nodes} nodes, and these paths are local to each node: {', '.join(local)}. "
            "Use S3 (or another object store URI) for input and output, or a filesystem mounted at the same "
            "path on every node and say so with --set storage.shared_filesystem=true")


def before_ray(spec: JobSpec, on_cluster: bool) -> str | None:
    """The device, when this machine decides it (no cluster); None: decided once Ray is up."""
    if on_cluster:
        return None
    device = resolve_device(spec, local_gpu_count())
    check_engine_installed()
    return device


def after_ray(spec: JobSpec, device: str | None) -> str:
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    check_paths_on_cluster(spec, len(alive))
    return device or resolve_device(spec, ray.cluster_resources().get("GPU", 0))
