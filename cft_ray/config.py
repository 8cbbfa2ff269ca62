"""Typed, validated configuration for the whole pipeline: the single source of every default.

A run's config is a preset (``cft_ray/presets/<name>.yaml``), optionally a user YAML on top
(which may name its own ``base`` preset), then ``dotted.key=value`` command-line overrides.
Every field has one default, here; presets only state what differs from it.

Errors are raised at load time as :class:`ConfigError`, naming the field and the fix.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from cft_ray.config_base import ConfigError, StrictModel
from cft_ray.data.config import DataConfig
from cft_ray.eval.config import EvalConfig
from cft_ray.storage import is_remote
from cft_ray.teacher.config import TeacherConfig
from cft_ray.train.config import TrainConfig
from cft_ray.tune.config import TuneConfig

PRESET_DIR = Path(__file__).parent / "presets"


class TinyModelConfig(StrictModel):
    """Settings of the offline tiny Qwen2 model (see :mod:`cft_ray.models.tiny`)."""

    vocab_size: int = Field(1024, ge=300, description="BPE vocabulary incl. special tokens")
    hidden_size: int = Field(128, ge=64)
    num_hidden_layers: int = Field(2, ge=1)
    num_attention_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(256, ge=16)
    max_position_embeddings: int = Field(2048, ge=128)
    seed: int = 0

    @model_validator(mode="after")
    def _head_dim_supported(self) -> "TinyModelConfig":
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.hidden_size // self.num_attention_heads < 32:
            # vLLM's CPU attention refuses head_dim=16 (stack notes); 64 is known to work.
            raise ValueError(
                "head dim hidden_size/num_attention_heads must be >= 32 (vLLM CPU refuses 16); "
                "use e.g. hidden_size=128, num_attention_heads=2"
            )
        return self


class ModelConfig(StrictModel):
    """The base model to fine-tune: a hub id, a local folder, or ``tiny`` (built offline)."""

    name_or_path: str = "tiny"
    tiny: TinyModelConfig = TinyModelConfig()
    cache_dir: str = Field(
        "~/.cache/cft-ray/models", description="where built tiny models are cached by settings"
    )


class RayConfig(StrictModel):
    """How to reach Ray: ``RAY_ADDRESS`` (or ``address``) for a cluster, else a local one."""

    address: str | None = None
    num_cpus: int | None = Field(
        None,
        ge=1,
        description="logical CPUs of a local cluster; default 8 or 2x cores, whichever is more "
        "(each Ray Data stage actor takes one, so a 2-core box needs more than 2)",
    )
    storage_path: str | None = Field(
        None, description="Ray Train/Tune storage (shared FS or s3://, gs://); default <run>/ray"
    )


class PipelineConfig(StrictModel):
    """Everything one run needs. ``name`` and ``output_dir`` decide where artifacts go."""

    name: str = "cft-run"
    preset: str | None = Field(None, description="the preset this config started from")
    output_dir: str = Field(
        "runs", description="where runs go: a local folder, or object storage for the pipeline "
        "(s3://bucket/prefix, gs://..., any URI pyarrow opens)"
    )
    work_dir: str = Field(
        "~/.cache/cft-ray/runs", description="local working copy of runs whose output_dir is object storage"
    )
    model: ModelConfig = ModelConfig()
    ray: RayConfig = RayConfig()
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def _cross_field_checks(self) -> "PipelineConfig":
        t = self.train
        per_step = t.micro_batch_size * t.num_workers
        if t.global_batch_size % per_step:
            raise ValueError(
                f"train.global_batch_size={t.global_batch_size} is not divisible by "
                f"train.micro_batch_size x train.num_workers = {t.micro_batch_size} x "
                f"{t.num_workers} = {per_step}; pick a global batch that is a multiple of "
                f"{per_step}, or change the micro batch / worker count"
            )
        if self.eval.select_on not in self.eval.benchmarks:
            raise ValueError(
                f"eval.select_on={self.eval.select_on!r} is not in eval.benchmarks "
                f"{self.eval.benchmarks}; add it to the list or select on one of them"
            )
        return self

    @property
    def run_uri(self) -> str | None:
        """The run's object-storage location, or None for a run in a local folder."""
        return f"{self.output_dir.rstrip('/')}/{self.name}" if is_remote(self.output_dir) else None

    @property
    def run_dir(self) -> Path:
        """The run's local folder: the run itself, or the working copy of one on object storage."""
        if self.run_uri:
            scheme, rest = self.run_uri.split("://", 1)
            return Path(self.work_dir).expanduser() / scheme / rest
        return Path(self.output_dir).expanduser() / self.name

    @property
    def grad_accum_steps(self) -> int:
        t = self.train
        return t.global_batch_size // (t.micro_batch_size * t.num_workers)

    def sha256(self) -> str:
        """Hash of the resolved config: same hash, same run."""
        return section_hash(self.model_dump(mode="json"))

    def write_resolved(self, directory: str | Path) -> Path:
        """Write ``config.yaml`` (resolved, every field) and ``config.sha256`` into directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "config.yaml"
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
        (directory / "config.sha256").write_text(self.sha256() + "\n")
        return path


def section_hash(value: Any) -> str:
    """Stable short hash of any JSON-able value (a whole config or one stage's section)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _preset_dict(name: str) -> dict[str, Any]:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        hint = difflib.get_close_matches(name, list_presets(), n=1)
        raise ConfigError(
            f"unknown preset {name!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f" Known presets: {', '.join(list_presets())}"
        )
    data = _read_yaml(path)
    base = data.pop("base", None)
    merged = _deep_merge(_preset_dict(base), data) if base else data
    merged["preset"] = name
    return merged


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _apply_override(data: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.field=value, e.g. train.learning_rate=1e-5")
    dotted, raw = override.split("=", 1)
    keys = dotted.strip().split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {key!r} is a value, not a section")
    node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<config>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            known = _known_fields(err["loc"][:-1])
            hint = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            msg = f"unknown field{f'; did you mean {hint[0]!r}?' if hint else ''} Known here: {', '.join(known)}"
        elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
            msg += f" (got {err['input']!r})"
        lines.append(f"  {loc}: {msg}")
    return "invalid config:\n" + "\n".join(lines)


def _known_fields(loc: tuple) -> list[str]:
    model: Any = PipelineConfig
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return sorted(getattr(model, "model_fields", {}))
        model = field.annotation
    return sorted(model.model_fields)


def load_config(
    preset: str | None = None,
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    check_hardware: bool = True,
) -> PipelineConfig:
    """Resolve preset -> YAML file -> overrides into a validated :class:`PipelineConfig`.

    With neither ``preset`` nor ``path`` the ``smoke`` preset is used. A YAML file may
    name its own ``base`` preset. ``check_hardware`` refuses GPU configs on a machine with
    no GPU unless a Ray cluster address is set (the GPUs would then be on the cluster).
    """
    data: dict[str, Any] = {}
    if path is not None:
        user = _read_yaml(Path(path))
        base = user.pop("base", None) or preset
        data = _deep_merge(_preset_dict(base), user) if base else user
    else:
        data = _preset_dict(preset or "smoke")
    for override in overrides or []:
        _apply_override(data, override)
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
    if check_hardware:
        _check_gpus(config)
    return config


def local_gpu_count() -> int:
    """GPUs on this machine, without importing torch (cheap enough for config loading)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _check_gpus(config: PipelineConfig) -> None:
    wants_gpu = config.train.use_gpu or config.eval.use_gpu or config.data.generation.use_gpu
    on_cluster = bool(config.ray.address or os.environ.get("RAY_ADDRESS"))
    if wants_gpu and not on_cluster and local_gpu_count() == 0:
        raise ConfigError(
            f"preset/config {config.preset or config.name!r} asks for GPUs (train.use_gpu="
            f"{config.train.use_gpu}, eval.use_gpu={config.eval.use_gpu}) but this machine has none "
            "and no Ray cluster is set. Submit it to a GPU cluster (RAY_ADDRESS / ray job submit), "
            "or run the CPU preset: --preset smoke"
        )
