"""The cluster definitions: every `ray up` YAML passes Ray's own cluster schema (as `ray up`
checks it, after merging the provider defaults), keeps the dashboard off public interfaces,
turns on token auth and installs the `gpu` extra; the KubeRay RayJob is well-formed; every
job entry point and config file they name exists in the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from cft_ray.config import load_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
RAY_UP_YAMLS = ["aws.yaml", "gcp.yaml", "onprem.yaml"]
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def _named_repo_paths(text: str) -> set[str]:
    """Repository files a definition names: job scripts and the configs passed to them."""
    return set(re.findall(r"\b((?:jobs|cft_ray)/[\w./-]+\.(?:py|yaml))\b", text))


def test_cluster_folder_has_every_definition():
    assert sorted(p.name for p in CLUSTER.glob("*.yaml")) == sorted([*RAY_UP_YAMLS, "kuberay-rayjob.yaml"])


@pytest.mark.parametrize("name", RAY_UP_YAMLS)
def test_ray_up_yaml_passes_ray_schema(name):
    raw = _load(name)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(raw, schema)  # the file as written
    validate_config(prepare_config(raw))  # and as `ray up` sees it, provider defaults merged


def test_schema_check_catches_a_broken_config():
    broken = _load("aws.yaml")
    broken["available_node_types"]["head"]["resources"] = {"CPU": "sixteen"}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


@pytest.mark.parametrize("name", RAY_UP_YAMLS)
def test_ray_up_yaml_is_secure_and_installs_gpu_extra(name):
    config = _load(name)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start, "dashboard must only be reachable via SSH tunnel"
    assert "0.0.0.0" not in head_start
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any('pip install -e ".[gpu]"' in c for c in config["setup_commands"])
    assert "ray dashboard cluster/" + name in (CLUSTER / name).read_text()


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_cloud_yaml_autoscales_gpu_workers(name):
    config = _load(name)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for n, t in config["available_node_types"].items() if n != config["head_node_type"]]
    assert workers and all(t["resources"]["GPU"] >= 1 and t["min_workers"] == 0 < t["max_workers"] for t in workers)


def test_onprem_yaml_is_local_provider():
    provider = _load("onprem.yaml")["provider"]
    assert provider["type"] == "local" and provider["head_ip"] and provider["worker_ips"]


def test_kuberay_rayjob_manifest():
    job = _load("kuberay-rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python jobs/full_pipeline.py --config ")
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"] == {"mode": "token"}
    gpu_groups = [
        g for g in cluster["workerGroupSpecs"]
        if int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)) > 0
    ]
    assert gpu_groups and all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in gpu_groups)
    yaml.safe_load(spec["runtimeEnvYAML"])  # the runtime env must itself parse


@pytest.mark.parametrize("name", [*RAY_UP_YAMLS, "kuberay-rayjob.yaml"])
def test_named_entry_points_exist(name):
    named = _named_repo_paths((CLUSTER / name).read_text())
    assert "jobs/full_pipeline.py" in named
    missing = sorted(p for p in named if not (REPO / p).is_file())
    assert not missing, f"{name} names files that are not in the repository: {missing}"
    for config in (p for p in named if p.endswith(".yaml")):
        load_config(path=REPO / config, check_hardware=False)  # the config it passes is valid
