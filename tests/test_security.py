"""Nothing a stray variable can turn against a run: the runtime env a job hands Ray (which the Ray
dashboard shows) carries settings, never a secret-looking variable, whatever its prefix."""
import pytest

from pipeline.core import envs
from pipeline.core.config import JobSpec
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


def test_every_read_goes_through_a_declared_name(monkeypatch):
    monkeypatch.setenv("TEKKEN_SRC", "/opt/tekken.json")
    assert envs.get("TEKKEN_SRC") == "/opt/tekken.json"
    with pytest.raises(KeyError, match="not declared"):
        envs.get("DOCINTEL_SOMETHING_NEW")
