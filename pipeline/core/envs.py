"""Every environment variable docintel reads, declared once (the idea of vLLM's vllm/envs.py), and
the two rules for the environment a job hands Ray's workers: which variables travel in its runtime
env, and which never do.

The runtime env is shown by the Ray dashboard and kept in Ray's GCS, so a secret-looking name stays
out of it whatever its prefix; workers take credentials from their own environment (Kubernetes
Secrets, IRSA, instance roles). Nothing here imports from pipeline: core is the bottom floor.
"""
from __future__ import annotations

import fnmatch
import os
from typing import Mapping

# What the product reads: name -> what it does. A read through `get` of a name missing here fails.
READ: dict[str, str] = {
    "RAY_ADDRESS": "the Ray cluster a run joins when ray.address is not set ('local': a new local Ray)",
    "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "Ray Data's Parquet footer readers per read_parquet; a value set by "
                                          "the user wins over ray.parquet_footer_actors",
    "TEKKEN_SRC": "the tekken.json a demo model is built with (default: the one mistral_common ships)",
    "DOCINTEL_PIXTRAL_PATCH": "0/false/no/off: leave vLLM's Pixtral vision encoder as it is (default: patched "
                              "where it needs it)",
    "DOCINTEL_S3_CONNECT_TIMEOUT_S": "S3 connect timeout in seconds (default 10)",
    "DOCINTEL_S3_REQUEST_TIMEOUT_S": "S3 stall timeout in seconds: less than 1 byte/s this long (default 30)",
    "AWS_ENDPOINT_URL_S3": "S3-compatible endpoint (MinIO, Ceph, R2); storage.endpoint_url sets it",
    "AWS_ENDPOINT_URL": "the same, when AWS_ENDPOINT_URL_S3 is not set",
    "AWS_REGION": "S3 region; storage.region sets it (default on AWS: the bucket's own region)",
    "AWS_DEFAULT_REGION": "the same, when AWS_REGION is not set",
    "VLLM_CPU_KVCACHE_SPACE": "KV cache of vLLM's CPU backend in GiB; a value set by the user wins over "
                              "engine.cpu_kvcache_gib",
    "PYTHONPATH": "extended (never replaced) with the Pixtral patch's plugin folder, for vLLM's processes",
    "VLLM_PLUGINS": "vLLM's plugin allow-list: when set, the Pixtral patch's plugin is added to it",
}

# Settings only: what travels into a job's runtime env, so that Ray's workers run as the driver was
# told to (vLLM's and OpenMP's settings, the S3 endpoint and region, docintel's own settings).
FORWARDED_PREFIXES = ("VLLM_", "TEKKEN_SRC", "OMP_", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
                      "HF_HOME", "DOCINTEL_")

# Names that look like a credential (matched case-insensitively): never forwarded, whatever their prefix.
SECRET_PATTERNS = ("*_KEY", "*_TOKEN", "*_SECRET", "*PASSWORD*", "AWS_ACCESS*", "AWS_SECRET*", "AWS_SESSION*")


def get(name: str, default: str | None = None) -> str | None:
    """The value of a declared variable (`default` when unset)."""
    if name not in READ:
        raise KeyError(f"{name} is read but not declared in pipeline/core/envs.py READ")
    return os.environ.get(name, default)


def is_secret(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name.upper(), pattern) for pattern in SECRET_PATTERNS)


def forwarded(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of `environ` that travel into a job's runtime env: settings, no secrets."""
    return {k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES) and not is_secret(k)}
