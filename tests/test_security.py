"""Nothing a stray variable or an upload can turn against a run: the runtime env a job hands Ray
(which the Ray dashboard shows) carries settings, never a secret-looking variable, whatever its
prefix; `docintel submit` uploads by allow-list, and nothing at all from an installed package."""
import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from pipeline import submit
from pipeline.core import envs
from pipeline.core.config import JobSpec, load_spec
from pipeline.job.run import init_ray

SECRETS = {"VLLM_API_KEY": "sk-vllm", "DOCINTEL_S3_SECRET": "s3-secret", "AWS_SECRET_ACCESS_KEY": "aws-secret",
           "AWS_ACCESS_KEY_ID": "AKIA0000", "AWS_SESSION_TOKEN": "aws-session", "HF_TOKEN": "hf_token",
           "MY_PASSWORD_X": "hunter2", "DOCINTEL_db_password": "lower-case too", "VLLM_some_token": "tok"}
SETTINGS = {"VLLM_SOME_SETTING": "1", "TEKKEN_SRC": "/opt/tekken.json", "OMP_NUM_THREADS": "2",
            "AWS_ENDPOINT_URL_S3": "http://minio:9000", "AWS_REGION": "eu-west-1", "HF_HOME": "/cache/hf",
            "DOCINTEL_S3_REQUEST_TIMEOUT_S": "45"}


def test_the_runtime_env_init_ray_submits_carries_settings_and_no_secret(monkeypatch):
    import ray

    for name, value in {**SECRETS, **SETTINGS}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", raising=False)
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    init_ray(JobSpec(ray={"verbose": True}))  # verbose: Ray's loggers are left alone

    (kwargs,) = calls
    sent = kwargs["runtime_env"]["env_vars"]
    leaked = {name for name in sent if name in SECRETS or sent[name] in SECRETS.values()}
    assert not leaked, leaked
    assert SETTINGS.items() <= sent.items()
    assert sent["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"] == "4"  # the spec's setting, added to what is forwarded


@pytest.mark.parametrize("name", ["VLLM_API_KEY", "hf_token", "DOCINTEL_S3_SECRET", "PGPASSWORD", "my_password_file",
                                  "AWS_ACCESS_KEY_ID", "aws_secret_access_key", "AWS_SESSION_TOKEN"])
def test_secret_looking_names(name):
    assert envs.is_secret(name)


@pytest.mark.parametrize("name", ["VLLM_SOME_SETTING", "TEKKEN_SRC", "AWS_REGION", "AWS_ENDPOINT_URL_S3", "HF_HOME",
                                  "DOCINTEL_PIXTRAL_PATCH", "VLLM_KEYS_DIR"])
def test_settings_are_not_secrets(name):
    assert not envs.is_secret(name)


def test_a_read_of_an_undeclared_variable_fails(monkeypatch):
    monkeypatch.setenv("TEKKEN_SRC", "/opt/tekken.json")
    assert envs.get("TEKKEN_SRC") == "/opt/tekken.json"
    with pytest.raises(KeyError, match="not declared"):
        envs.get("DOCINTEL_SOMETHING_NEW")


# ---- docintel submit: what reaches the cluster ---------------------------------------------

class RecordingClient:
    """Ray's JobSubmissionClient as far as submit() uses it: each submission's runtime env, and the
    files Ray's own packaging zips from its working_dir, read while submit_job runs (as Ray's client
    uploads it then: .gitignore and excludes honoured)."""

    def __init__(self, scratch: Path):
        self.scratch, self.submitted = scratch, []

    def submit_job(self, **job):
        from ray._private.runtime_env.packaging import create_package

        env, uploaded = job["runtime_env"], None
        if "working_dir" in env:
            package = self.scratch / f"package-{len(self.submitted)}.zip"
            create_package(env["working_dir"], package, include_gitignore=True, excludes=env.get("excludes", []))
            uploaded = set(zipfile.ZipFile(package).namelist())
        self.submitted.append((job, uploaded))


CHECKOUT = {
    "pyproject.toml": '[project]\nname = "docintel"\nversion = "0.1.0"\n',
    "pipeline/__init__.py": "", "pipeline/cli.py": "", "pipeline/__pycache__/cli.cpython-311.pyc": "",
    "pipeline/.env": "AWS_SECRET_ACCESS_KEY=in-the-package-folder",
    "jobs/docvqa.yaml": "name: docvqa\n", "schemas/fields/invoice.json": "{}",
    "models/tiny-reader/params.json": "{}", "models/other-model/params.json": "{}",
    # the job's own files, somewhere in the checkout
    "work/job.yaml": json.dumps({"task": {"name": "fields", "fields_schema": "work/total.json"},
                                 "engine": {"model": "models/tiny-reader", "system_prompt": "@work/prompt.txt"},
                                 "input": {"paths": ["work/docs"], "manifest": "work/questions.jsonl"}}),
    "work/total.json": "{}", "work/prompt.txt": "Read the page.", "work/docs/a.pdf": "%PDF-1.7",
    "work/docs/.hidden.pdf": "%PDF-1.7", "work/docs/notes.txt": "not a document",
    "work/questions.jsonl": json.dumps({"path": "more/b.png", "questions": ["What is the total?"]}),
    "work/more/b.png": "PNG", "work/more/c.png": "PNG, not listed",
    # what a user keeps in a checkout
    ".env": "VLLM_API_KEY=sk-live", "key.pem": "-----BEGIN PRIVATE KEY-----", "credentials.json": "{}",
    "tests/x.py": "", "notes/plans.md": "", "tools/train.py": "", "out/run_id=1/_SUCCESS": "",
}
TRAVELS = {"pyproject.toml", "pipeline/__init__.py", "pipeline/cli.py", "jobs/docvqa.yaml", "schemas/fields/invoice.json",
           "models/tiny-reader/params.json", "work/job.yaml", "work/total.json", "work/prompt.txt", "work/docs/a.pdf",
           "work/questions.jsonl", "work/more/b.png"}


def test_submit_uploads_the_allow_list_and_the_jobs_own_files_only(tmp_path, monkeypatch):
    root = (tmp_path / "checkout").resolve()
    for name, text in CHECKOUT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    client = RecordingClient(tmp_path)
    monkeypatch.setattr(submit, "client", lambda address: client)
    monkeypatch.chdir(root)  # names as a user gives them from the checkout's root

    spec = load_spec("work/job.yaml")
    submit.submit("http://head:8265", ["work/job.yaml"], "r1", root, submit.job_files(spec, "work/job.yaml", root), [])

    ((job, uploaded),) = client.submitted
    assert uploaded == TRAVELS
    assert job["entrypoint"] == "python -m pipeline.cli run work/job.yaml"
    assert not Path(job["runtime_env"]["working_dir"]).exists()  # the staged copy is gone after the upload


def test_an_installed_package_uploads_nothing_and_runs_the_installed_docintel(tmp_path, monkeypatch):
    """submit.py as a wheel installs it (site-packages/pipeline/): not a checkout, no working_dir."""
    site = tmp_path / "site-packages"
    (site / "pipeline").mkdir(parents=True)
    shutil.copy(submit.__file__, site / "pipeline" / "submit.py")
    loaded = importlib.util.spec_from_file_location("installed_submit", site / "pipeline" / "submit.py")
    installed = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(installed)

    assert installed.project_root() is None
    (site / "pyproject.toml").write_text('[project]\nname = "someone-else"\n\n[tool.x]\nname = "docintel"\n')
    assert installed.project_root() is None  # another project's checkout is not docintel's either
    client = RecordingClient(tmp_path)
    monkeypatch.setattr(installed, "client", lambda address: client)
    installed.submit("http://head:8265", ["jobs/nightly.yaml"], "r2", None, [], ["boto3"])
    ((job, uploaded),) = client.submitted
    assert job["runtime_env"] == {"pip": ["boto3"]} and uploaded is None
    assert job["entrypoint"] == "docintel run jobs/nightly.yaml"
    assert submit.project_root() == Path(submit.__file__).resolve().parents[1]  # this checkout is one


def test_a_job_cannot_put_a_secret_in_its_runtime_env_either():
    with pytest.raises(ValueError, match="VLLM_API_KEY"):
        JobSpec(ray={"runtime_env": {"env_vars": {"VLLM_API_KEY": "sk", "VLLM_SOME_SETTING": "1"}}})
    assert JobSpec(ray={"runtime_env": {"env_vars": {"VLLM_SOME_SETTING": "1"}}}).ray.runtime_env


def test_every_variable_the_package_reads_goes_through_envs():
    """Reads of os.environ / os.getenv anywhere but core/envs.py (writes, for the processes the product
    starts, are left alone); envs.get refuses a name it does not declare."""
    import ast

    root = Path(envs.__file__).parents[1]
    reads = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "envs.py" and path.parent.name == "core":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            target = node.func if isinstance(node, ast.Call) else node if isinstance(node, ast.Subscript) else None
            text = ast.unparse(target) if target is not None else ""
            if (text in ("os.environ.get", "os.getenv") or
                    (isinstance(node, ast.Subscript) and text.startswith("os.environ[") and
                     isinstance(node.ctx, ast.Load))):
                reads.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not reads, reads
