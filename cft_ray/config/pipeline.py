"""The whole run's config: one typed section per stage plus where the run lives."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field

from cft_ray.config.base import StrictModel
from cft_ray.config.cluster import RayConfig
from cft_ray.config.data import DataConfig
from cft_ray.config.eval import EvalConfig
from cft_ray.config.model import ModelConfig
from cft_ray.config.teacher import TeacherConfig
from cft_ray.config.train import TrainConfig
from cft_ray.config.tune import TuneConfig
from cft_ray.core.hashing import section_hash


def is_remote(location: str | Path) -> bool:
    """True for a URI pyarrow resolves to object storage (anything but a local path or file://)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


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
    def teacher_cache(self) -> str:
        """Where paid answers are kept: ``teacher.cache_dir``, else ``<run>/teacher-cache``, beside
        the stage and step folders rather than inside one. Those folders are keyed by settings that
        may change between runs; the cache is keyed per request, so a rerun with any other
        pacing, budget or row count finds every answer it already paid for."""
        return self.teacher.cache_dir or f"{self.run_uri or self.run_dir.resolve()}/teacher-cache"

    def with_teacher_cache(self) -> "PipelineConfig":
        """This config with ``teacher.cache_dir`` resolved (not an output-shaping field: keys stay)."""
        return self.model_copy(update={"teacher": self.teacher.model_copy(update={"cache_dir": self.teacher_cache})})

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
