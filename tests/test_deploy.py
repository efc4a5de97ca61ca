"""Static checks of the deployment files in deploy/: they parse, carry the fields their kind needs,
hold no credentials, and every `docintel ...` command they contain (entrypoints, scripts, usage
lines in comments) is accepted by the real CLI parser. No cluster, Docker or network needed."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from pipeline.cli import build_parser, spec_overrides
from pipeline.core.config import load_spec

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
YAML_FILES = sorted([*DEPLOY.glob("*.yaml"), *DEPLOY.glob("*.yml")])
DOCKERFILE = DEPLOY / "Dockerfile"

GPU = "nvidia.com/gpu"
# Every kind in deploy/ must be checked by something here; a new kind fails until it is.
K8S_KINDS = {"RayJob", "RayCluster", "CronJob", "ServiceAccount", "Role", "RoleBinding",
             "PersistentVolumeClaim", "Kustomization"}
# Instance types with 80 GB GPUs: one holds Mistral Small 3.2 in bf16 (~55 GB with its cache).
GPU_80GB_INSTANCE_TYPES = {"p4de.24xlarge", "p5.4xlarge", "p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge"}
CREDENTIAL_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|ACCESS_KEY|CREDENTIAL|PRIVATE_KEY", re.I)
CREDENTIAL_TEXT = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),                 # AWS access key ids
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),                     # Hugging Face tokens
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]
# The shape of an AWS secret access key: 40 base64 characters, mixed case and digits (so a 40-hex
# git SHA is not one).
AWS_SECRET_SHAPE = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


# ---- helpers -----------------------------------------------------------------------------

def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


ALL_DOCS = {p.name: _docs(p) for p in YAML_FILES}


def _of_kind(kind: str) -> list[tuple[str, dict]]:
    return [(name, d) for name, docs in ALL_DOCS.items() for d in docs
            if isinstance(d, dict) and d.get("kind") == kind]


def _one(kind: str) -> tuple[str, dict]:
    found = _of_kind(kind)
    assert len(found) == 1, f"expected exactly one {kind} in deploy/, found {[n for n, _ in found]}"
    return found[0]


def _launcher() -> tuple[str, dict]:
    found = [(n, d) for n, docs in ALL_DOCS.items() for d in docs
             if isinstance(d, dict) and "cluster_name" in d and "provider" in d]
    assert len(found) == 1, "expected one Ray cluster-launcher config (cluster_name + provider) in deploy/"
    return found[0]


def _walk(node: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def _strings(node: Any) -> Iterator[str]:
    for _, value in _walk(node):
        if isinstance(value, str):
            yield value


def _ray_pin() -> str:
    match = re.search(r'"ray\[[a-z,]+\]==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert match, "pyproject.toml pins ray[...]==X"
    return match.group(1)


def _quantity(value: Any) -> float:
    """Kubernetes quantity -> float (CPUs or bytes)."""
    text = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _pod_spec(group: dict) -> dict:
    return group["template"]["spec"]


def _containers(group: dict) -> list[dict]:
    return _pod_spec(group)["containers"]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _from_secret(container: dict, name: str) -> bool:
    """`name` comes from a Secret: env valueFrom.secretKeyRef, or envFrom secretRef."""
    entry = _env(container).get(name)
    if entry is not None:
        return "value" not in entry and "secretKeyRef" in entry.get("valueFrom", {})
    return any("secretRef" in src for src in container.get("envFrom", []))


def _check_shm(group: dict, where: str) -> None:
    spec = _pod_spec(group)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for c in spec["containers"]:
        mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
        assert mounts, f"{where}: container {c['name']} mounts nothing at /dev/shm (Ray's object store)"
        volume = volumes.get(mounts[0]["name"])
        assert volume is not None, f"{where}: /dev/shm volume {mounts[0]['name']} is not defined"
        assert volume.get("emptyDir", {}).get("medium") == "Memory", f"{where}: /dev/shm must be emptyDir medium Memory"


def _check_ray_cluster_spec(spec: dict, where: str, autoscaling: bool) -> None:
    assert spec.get("rayVersion") == _ray_pin(), f"{where}: rayVersion must be the Ray pinned in pyproject.toml"
    head = spec["headGroupSpec"]
    params = head["rayStartParams"]
    assert params.get("num-gpus") == "0", f"{where}: head rayStartParams num-gpus must be \"0\" (a string)"
    for group in [head, *spec["workerGroupSpecs"]]:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), \
            f"{where}: rayStartParams values must be strings (KubeRay: map[string]string)"
    for c in _containers(head):
        for part in ("requests", "limits"):
            assert GPU not in c.get("resources", {}).get(part, {}), f"{where}: the head asks for a GPU"
    _check_shm(head, f"{where} head")

    images = {c["image"] for g in [head, *spec["workerGroupSpecs"]] for c in _containers(g)}
    assert len(images) == 1, f"{where}: head and workers must run the same image, got {images}"

    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if any(GPU in c.get("resources", {}).get("limits", {}) for c in _containers(g))]
    assert gpu_groups, f"{where}: no worker group with {GPU} in resources.limits"
    for g in gpu_groups:
        gw = f"{where} worker group {g['groupName']}"
        mn, mx, replicas = g.get("minReplicas", 0), g.get("maxReplicas"), g.get("replicas", 0)
        # pipeline.run.resolve_device checks ray.cluster_resources() (running nodes only) before it
        # asks for a GPU: a cluster scaled to zero GPU workers stops every job with "No GPU".
        assert mn >= 1, f"{gw}: minReplicas must be >= 1 (docintel refuses a cluster with 0 GPUs at start)"
        assert mx is not None and mn <= replicas <= mx, f"{gw}: replicas must lie in [minReplicas, maxReplicas]"
        if autoscaling:
            assert mx > mn, f"{gw}: an autoscaled group needs maxReplicas > minReplicas"
        _check_shm(g, gw)
        volumes = {v["name"]: v for v in _pod_spec(g).get("volumes", [])}
        for c in _containers(g):
            res = c["resources"]
            assert int(res["limits"][GPU]) >= 1
            assert str(res.get("requests", {}).get(GPU, res["limits"][GPU])) == str(res["limits"][GPU]), \
                f"{gw}: {GPU} requests and limits must be equal"
            assert _quantity(res["requests"]["memory"]) >= 64 * 2**30, f"{gw}: < 64Gi memory for a 24B model"
            assert _quantity(res["requests"]["cpu"]) >= 4, f"{gw}: < 4 CPUs for rendering + engine"
            assert _from_secret(c, "HF_TOKEN"), f"{gw}: HF_TOKEN must come from a Secret"
            hf_home = _env(c).get("HF_HOME", {}).get("value")
            assert hf_home, f"{gw}: HF_HOME (model cache) not set"
            cache = [m for m in c.get("volumeMounts", []) if hf_home.startswith(m["mountPath"].rstrip("/") + "/")
                     or hf_home == m["mountPath"]]
            assert cache, f"{gw}: HF_HOME={hf_home} is not on a mounted volume"
            assert "persistentVolumeClaim" in volumes[cache[0]["name"]], f"{gw}: the model cache must be a PVC"
    for g in [head, *spec["workerGroupSpecs"]]:
        for c in _containers(g):
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert _from_secret(c, key), f"{where}: {c['name']} must take {key} from a Secret"


# ---- every file --------------------------------------------------------------------------

def test_deploy_has_the_expected_files():
    names = {p.name for p in DEPLOY.iterdir()}
    for required in ("Dockerfile", "rayjob.yaml", "raycluster.yaml", "cronjob.yaml", "cluster-launcher.yaml"):
        assert required in names, f"deploy/{required} missing"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_yaml_parses_and_every_kind_is_known(path):
    docs = ALL_DOCS[path.name]
    assert docs, f"{path.name}: no YAML document"
    for d in docs:
        assert isinstance(d, dict), f"{path.name}: a document is not a mapping"
        if "kind" in d:
            assert d["kind"] in K8S_KINDS, f"{path.name}: kind {d['kind']} is not checked by tests/test_deploy.py"
            assert "apiVersion" in d
        else:
            assert "cluster_name" in d and "provider" in d, f"{path.name}: neither a Kubernetes object nor a launcher config"


@pytest.mark.parametrize("path", [*YAML_FILES, DOCKERFILE, *DEPLOY.glob("*.dockerignore")], ids=lambda p: p.name)
def test_no_credentials(path):
    text = path.read_text()
    for pattern in CREDENTIAL_TEXT:
        assert not pattern.search(text), f"{path.name}: something that looks like a credential: {pattern.pattern}"
    for m in AWS_SECRET_SHAPE.finditer(text):
        word = m.group(0)
        assert not (re.search(r"[A-Z]", word) and re.search(r"[a-z]", word) and re.search(r"[0-9]", word)), \
            f"{path.name}: {word[:4]}... looks like an AWS secret access key"
    # Documented `kubectl create secret ... --from-literal=KEY=...` lines keep placeholders.
    for m in re.finditer(r"--from-literal=(\w+)=(\S+)", text):
        if CREDENTIAL_NAME.search(m.group(1)):
            assert m.group(2).strip("'\"") == "...", f"{path.name}: a literal value for {m.group(1)}"
    # Docker `-e NAME=value` / `--env NAME=value` with a credential-looking name.
    for m in re.finditer(r"(?:-e|--env)[ =](\w+)=", text):
        assert not CREDENTIAL_NAME.search(m.group(1)), f"{path.name}: literal {m.group(1)} in a docker option"
    if path.suffix in (".yaml", ".yml"):
        for d in ALL_DOCS[path.name]:
            assert d.get("kind") != "Secret", f"{path.name}: a Secret with its values does not belong in git"
            for where, node in _walk(d):
                if not isinstance(node, dict):
                    continue
                # env entries: {name: X_SECRET, value: ...} is a literal credential
                if isinstance(node.get("name"), str) and CREDENTIAL_NAME.search(node["name"]):
                    assert "value" not in node, f"{path.name} {where}: literal value: for {node['name']}"
                # plain mappings: aws_secret_access_key: xxx
                for key, value in node.items():
                    if isinstance(key, str) and CREDENTIAL_NAME.search(key) and isinstance(value, (str, int)):
                        pytest.fail(f"{path.name} {where}.{key}: literal credential value")


# ---- RayJob, RayCluster ------------------------------------------------------------------

def test_rayjob():
    name, job = _one("RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    meta = job["metadata"]
    # Created every night with `kubectl create`: a generated name, never a fixed one.
    assert meta.get("generateName") and "name" not in meta, f"{name}: use metadata.generateName, not name"
    spec = job["spec"]
    assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    assert spec["entrypoint"].split()[0] == "docintel"
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    assert "runtimeEnvYAML" not in spec or not CREDENTIAL_NAME.search(spec["runtimeEnvYAML"]), \
        "secrets never go into a runtime_env (the Ray dashboard shows it)"
    assert "clusterSelector" not in spec, "the nightly RayJob brings its own cluster"
    _check_ray_cluster_spec(spec["rayClusterSpec"], name, autoscaling=False)


def test_raycluster():
    name, cluster = _one("RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["metadata"].get("name")
    spec = cluster["spec"]
    assert spec.get("enableInTreeAutoscaling") is True
    _check_ray_cluster_spec(spec, name, autoscaling=True)


# ---- CronJob -----------------------------------------------------------------------------

_CRON_FIELDS = [(0, 59, {}), (0, 23, {}), (1, 31, {}),
                (1, 12, {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}),
                (0, 7, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())})]


def _valid_cron(expr: str) -> bool:
    fields = expr.split()
    if len(fields) != 5:
        return False
    for text, (lo, hi, names) in zip(fields, _CRON_FIELDS):
        for item in text.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                return False
            if base == "*":
                continue
            bounds = base.split("-")
            if len(bounds) > 2:
                return False
            values = []
            for b in bounds:
                b = b.lower()
                if b in names:
                    values.append(names[b])
                elif b.isdigit():
                    values.append(int(b))
                else:
                    return False
            if not all(lo <= v <= hi for v in values) or (len(values) == 2 and values[0] > values[1]):
                return False
    return True


@pytest.mark.parametrize("expr,ok", [("0 2 * * *", True), ("*/15 1-5 * jan-mar mon,fri", True),
                                     ("0 2 * *", False), ("60 2 * * *", False), ("@daily", False),
                                     ("0 2 * * * *", False), ("0 5-2 * * *", False)])
def test_cron_validator(expr, ok):
    assert _valid_cron(expr) is ok


def test_cronjob_creates_a_rayjob_nightly():
    name, cron = _one("CronJob")
    assert cron["apiVersion"] == "batch/v1"
    spec = cron["spec"]
    assert _valid_cron(spec["schedule"]), f"{name}: schedule {spec['schedule']!r} is not a 5-field cron expression"
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    script = "\n".join(s for c in pod["containers"] for s in [*c.get("command", []), *c.get("args", [])])
    # `create` (generateName needs it; `apply` would need a fixed name and overwrite yesterday's run).
    create = re.search(r"kubectl\s+create\s+(?:[^\n]*\s)?-f\s+(\S+)", script)
    assert create, f"{name}: the container must `kubectl create -f` the RayJob"
    assert not re.search(r"kubectl\s+apply\b", script), f"{name}: use kubectl create, not apply"
    manifest = Path(create.group(1))
    # The manifest comes from a ConfigMap mounted where the script reads it...
    mounts = [m for c in pod["containers"] for m in c.get("volumeMounts", [])
              if manifest.as_posix().startswith(m["mountPath"].rstrip("/") + "/")]
    assert mounts, f"{name}: {manifest} is not on a mounted volume"
    volume = {v["name"]: v for v in pod["volumes"]}[mounts[0]["name"]]
    configmap = volume.get("configMap", {}).get("name")
    assert configmap, f"{name}: {manifest} must come from a ConfigMap"
    # ...whose content is deploy/<that file name>, a RayJob with a generated name.
    source = DEPLOY / manifest.name
    assert source.exists(), f"{name}: the ConfigMap holds {manifest.name}, which deploy/ lacks"
    kinds = [(d.get("kind"), d.get("metadata", {})) for d in _docs(source)]
    assert [k for k, _ in kinds] == ["RayJob"], f"{manifest.name} must hold exactly one RayJob"
    assert kinds[0][1].get("generateName"), f"{manifest.name}: the RayJob needs metadata.generateName"
    generators = [g for _, k in _of_kind("Kustomization") for g in k.get("configMapGenerator", [])
                  if g.get("name") == configmap]
    for g in generators:
        assert manifest.name in [f.split("=")[-1] for f in g.get("files", [])]

    # RBAC: the pod's ServiceAccount may create (and read) RayJobs, and exists in the same file.
    sa = pod.get("serviceAccountName")
    assert sa, f"{name}: set serviceAccountName (the default account cannot create RayJobs)"
    assert any(d["metadata"]["name"] == sa for _, d in _of_kind("ServiceAccount"))
    bindings = [d for _, d in _of_kind("RoleBinding")
                if any(s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in d.get("subjects", []))]
    assert bindings, f"no RoleBinding for ServiceAccount {sa}"
    roles = {d["metadata"]["name"]: d for _, d in _of_kind("Role")}
    granted: set[str] = set()
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role"
        for rule in roles[b["roleRef"]["name"]]["rules"]:
            if "ray.io" in rule.get("apiGroups", []) and "rayjobs" in rule.get("resources", []):
                granted |= set(rule.get("verbs", []))
    assert {"create", "get", "list"} <= granted, f"ServiceAccount {sa} may only {sorted(granted)} rayjobs"
    assert "*" not in granted


# ---- cluster launcher --------------------------------------------------------------------

def test_cluster_launcher():
    name, cfg = _launcher()
    assert cfg["provider"]["type"] == "aws" and cfg["provider"].get("region")
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types, f"{name}: head_node_type is not one of available_node_types"
    head = types[cfg["head_node_type"]]
    assert not head.get("resources", {}).get("GPU"), f"{name}: the head should not be a GPU node"
    gpu_types = {k: t for k, t in types.items() if t.get("resources", {}).get("GPU", 0) >= 1}
    assert gpu_types, f"{name}: no node type with resources GPU >= 1"
    for key, t in gpu_types.items():
        assert t["node_config"]["InstanceType"] in GPU_80GB_INSTANCE_TYPES, f"{key}: not an 80 GB GPU type"
        assert t.get("min_workers", 0) >= 1, f"{key}: min_workers >= 1 (docintel refuses a cluster with 0 GPUs)"
        assert t["min_workers"] <= t["max_workers"] <= cfg["max_workers"]
    setup = " ".join([*cfg.get("setup_commands", []), *cfg.get("worker_setup_commands", [])])
    assert re.search(r"pip install\b.*\[gpu\]", setup), f"{name}: setup_commands must pip install the package with [gpu]"
    image = cfg.get("docker", {}).get("image", "")
    if image.startswith("rayproject/ray"):
        assert image.split(":")[1].startswith(_ray_pin() + "-"), f"{name}: the image's Ray must be the pinned {_ray_pin()}"


def test_cluster_launcher_passes_rays_own_schema():
    pytest.importorskip("ray")
    from ray.autoscaler._private.util import prepare_config, validate_config

    _, cfg = _launcher()
    validate_config(prepare_config(dict(cfg)))  # what `ray up` does before it launches anything


# ---- docintel command lines --------------------------------------------------------------

_SUBCOMMANDS = sorted(next(a for a in build_parser()._actions  # run, submit, eval, status, ...
                           if isinstance(a, argparse._SubParsersAction)).choices)
# A command starts a line (after '#' and a '$ ' prompt) or follows a shell separator or `--`
# (`ray job submit ... -- docintel run ...`); prose that merely mentions docintel is not matched.
_COMMAND_START = re.compile(r"(?:^(?:#\s*)?(?:\$\s+)?|(?:&&|\|\||;|\||\s--)\s+)(docintel\s+(?:%s))(?=\s|$)"
                            % "|".join(map(re.escape, _SUBCOMMANDS)))
_SHELL_END = {"&&", "||", ";", "|", ">", ">>", "2>&1", "&"}


def _logical_lines(text: str) -> Iterator[str]:
    """Lines with backslash continuations joined; a comment's continuation lines lose their '#'."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending and line.startswith("#"):
            line = line.lstrip("#").strip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def _docintel_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every `docintel <subcommand> ...` in deploy/: YAML values and comments."""
    found = []
    sources = [(p.name, p.read_text()) for p in [*YAML_FILES, DOCKERFILE]]
    sources += [(f"{name} (parsed)", s) for name, docs in ALL_DOCS.items() for d in docs for s in _strings(d)]
    for where, text in sources:
        for line in _logical_lines(text):
            for m in _COMMAND_START.finditer(line):
                tokens = []
                for tok in shlex.split(line[m.start(1):], comments=False):
                    if tok in _SHELL_END or tok.startswith("#"):
                        break
                    tokens.append(tok)
                found.append((where, tokens))
    return found


COMMANDS = _docintel_commands()


def test_commands_were_found():
    _, job = _one("RayJob")
    argvs = [argv for _, argv in COMMANDS]
    assert shlex.split(job["spec"]["entrypoint"]) in argvs, "the RayJob entrypoint was not checked"
    assert len(COMMANDS) >= 2


_IDS = [f"{w}: {' '.join(a[:3])}" for w, a in COMMANDS]


def _parse(where: str, argv: list[str], capsys):
    assert argv[0] == "docintel"
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse: unknown flag, missing value, bad choice
        pytest.fail(f"{where}: `{shlex.join(argv)}` is rejected by the docintel CLI: "
                    f"{capsys.readouterr().err.strip()} (exit {exc.code})")


def _local_spec(spec: str) -> Path:
    """The repository file behind a spec path of a command (/app/... is the image's copy of the repo)."""
    return ROOT / spec.removeprefix("/app/") if spec.startswith("/app/") else ROOT / spec


@pytest.mark.parametrize("where,argv", COMMANDS, ids=_IDS)
def test_docintel_command_parses(where, argv, capsys):
    args = _parse(where, argv, capsys)
    # The flag values must make a valid job spec too (--concurrency, --set keys, --run-id ...):
    # checked on the built-in defaults here, on the named spec file in the next test.
    if args.command in ("run", "submit", "eval"):
        load_spec(None, spec_overrides(args))


@pytest.mark.parametrize("where,argv", COMMANDS, ids=_IDS)
def test_docintel_command_spec_file_is_valid(where, argv, capsys):
    args = _parse(where, argv, capsys)
    spec = getattr(args, "spec", None)
    if not spec:
        pytest.skip("names no spec file")
    local = _local_spec(spec)
    if not local.exists():
        pytest.skip(f"{spec}: {local.relative_to(ROOT)} is not in the repository yet (flags were checked)")
    load_spec(local, spec_overrides(args))


def _gpu_capacity(path_name: str) -> tuple[int, int] | None:
    """(most GPUs the cluster defined in deploy/<path_name> can have, GPUs of its largest node)."""
    docs = ALL_DOCS.get(path_name.removesuffix(" (parsed)"), [])
    for d in docs:
        spec = {"RayJob": lambda: d["spec"]["rayClusterSpec"], "RayCluster": lambda: d["spec"]}.get(d.get("kind"))
        if spec:
            groups = spec()["workerGroupSpecs"]
            per_pod = [sum(int(c.get("resources", {}).get("limits", {}).get(GPU, 0)) for c in _containers(g))
                       for g in groups]
            total = sum(n * g.get("maxReplicas", g.get("replicas", 0)) for n, g in zip(per_pod, groups))
            return total, max(per_pod)
        if "available_node_types" in d:
            types = d["available_node_types"].values()
            gpus = [int(t.get("resources", {}).get("GPU", 0)) for t in types]
            return sum(n * t.get("max_workers", 0) for n, t in zip(gpus, types)), max(gpus)
    return None


@pytest.mark.parametrize("where,argv", COMMANDS, ids=_IDS)
def test_cluster_has_the_gpus_the_command_asks_for(where, argv, capsys):
    """engine.concurrency replicas of engine.tensor_parallel_size GPUs each must fit the cluster
    the command runs on (a replica's GPUs within one node), or actors wait for GPUs forever."""
    args = _parse(where, argv, capsys)
    capacity = _gpu_capacity(where)
    if args.command not in ("run", "submit") or capacity is None:
        pytest.skip("not a job on a cluster defined in deploy/")
    local = _local_spec(args.spec) if args.spec else None
    spec = load_spec(local if local is not None and local.exists() else None, spec_overrides(args))
    total, per_node = capacity
    need = spec.engine.concurrency * spec.engine.tensor_parallel_size
    assert spec.engine.tensor_parallel_size <= per_node, \
        f"{where}: tensor_parallel_size {spec.engine.tensor_parallel_size} > {per_node} GPUs per node/pod"
    assert need <= total, f"{where}: the job wants {need} GPUs, the cluster has at most {total}"


# ---- Dockerfile --------------------------------------------------------------------------

def _dockerfile_lines() -> list[str]:
    return [line for line in _logical_lines(DOCKERFILE.read_text()) if line and not line.startswith("#")]


def test_dockerfile_installs_the_package_with_the_gpu_extra():
    lines = _dockerfile_lines()
    text = "\n".join(lines)
    # An install that pulls the dependencies (not a --no-deps refresh): that is what brings vLLM.
    installs = [cmd for line in lines for cmd in re.split(r"&&|;", line)
                if re.search(r"\bpip install\b", cmd) and "--no-deps" not in cmd]
    assert any(re.search(r"\s-e\s+['\"]?[^\s'\"]*\[gpu\]", cmd) for cmd in installs), \
        "the Dockerfile must `pip install -e '...[gpu]'` this package (with its dependencies)"
    # KubeRay supplies the container command: no ENTRYPOINT/CMD.
    assert not [line for line in lines if re.match(r"(ENTRYPOINT|CMD)\b", line)]
    # The image's Ray must be the one pyproject.toml pins (pip would otherwise replace it).
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), froms[0])
    if base.startswith("rayproject/ray"):
        assert base.split(":")[1].startswith(_ray_pin() + "-"), f"base image {base} is not Ray {_ray_pin()}"
    # The job specs the manifests name (/app/jobs/...) and the schemas the package reads are copied.
    copied = " ".join(line for line in lines if line.startswith("COPY "))
    for needed in ("pipeline", "schemas", "jobs", "pyproject.toml"):
        assert needed in copied, f"the Dockerfile does not COPY {needed}"


def test_dockerfile_references_no_credentials():
    for line in _dockerfile_lines():
        m = re.match(r"(ENV|ARG)\s+(.*)", line)
        if m:
            names = re.findall(r"(\w+)=", m.group(2)) or m.group(2).split()[:1]
            for n in names:
                assert not CREDENTIAL_NAME.search(n), f"Dockerfile: {m.group(1)} {n} bakes a credential into the image"
        assert not re.search(r"--mount=type=secret|\.aws/credentials|HF_TOKEN|AWS_SECRET|AWS_ACCESS", line), \
            f"Dockerfile: credentials referenced: {line}"


def test_dockerignore_keeps_what_the_dockerfile_copies():
    ignore = DEPLOY / "Dockerfile.dockerignore"
    if not ignore.exists():
        pytest.skip("no deploy/Dockerfile.dockerignore")
    patterns = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
    if "**" not in patterns and "*" not in patterns:
        return
    for line in _dockerfile_lines():
        if line.startswith("COPY ") and "--from" not in line:
            for src in [t for t in line.split()[1:-1] if not t.startswith("--")]:
                assert f"!{src}" in patterns, f"Dockerfile.dockerignore excludes {src}, which the Dockerfile copies"
