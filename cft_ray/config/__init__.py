"""Typed, validated configuration: one section class per stage, the single source of every default.

This package imports no stage and no heavy dependency (no Ray, torch, vLLM, openai or aiohttp),
so any layer may read a config. Sections: ``model`` (:class:`ModelConfig`), ``ray``
(:class:`RayConfig`), ``data``, ``teacher``, ``train``, ``eval``, ``tune``; :class:`PipelineConfig`
holds them all, and :func:`load_config` resolves presets, YAML files and overrides into one.
"""

from cft_ray.config.base import ConfigError, StrictModel
from cft_ray.config.cluster import RayConfig
from cft_ray.config.data import (
    DataConfig,
    DecontamConfig,
    GenerationConfig,
    SourceConfig,
    SubsetConfig,
    UserTemplate,
)
from cft_ray.config.eval import EvalConfig
from cft_ray.config.loader import apply_overrides, list_presets, load_config, parse_override, set_dotted, validate
from cft_ray.config.model import ModelConfig, TinyModelConfig
from cft_ray.config.pipeline import PipelineConfig
from cft_ray.config.teacher import TeacherConfig
from cft_ray.config.train import TrainConfig
from cft_ray.config.tune import SIZE_KEY, TuneConfig

__all__ = [
    "SIZE_KEY", "ConfigError", "DataConfig", "DecontamConfig", "EvalConfig", "GenerationConfig", "ModelConfig",
    "PipelineConfig", "RayConfig", "SourceConfig", "StrictModel", "SubsetConfig", "TeacherConfig",
    "TinyModelConfig", "TrainConfig", "TuneConfig", "UserTemplate", "apply_overrides", "list_presets",
    "load_config", "parse_override", "set_dotted", "validate",
]
