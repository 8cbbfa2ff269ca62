"""Resolving a run's config: preset -> user YAML -> ``dotted.key=value`` overrides -> validation.

A run's config is a preset (``cft_ray/presets/<name>.yaml``), optionally a user YAML on top
(which may name its own ``base`` preset), then command-line overrides. Every field has one
default, in its section's class; presets only state what differs from it. Errors are raised at
load time as :class:`ConfigError`, naming the field and the fix.

:func:`set_dotted` is the one place a dotted key is written into a config: command-line
overrides, sweep grid points and ``--grid`` axes all go through it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cft_ray.config import hardware
from cft_ray.config.pipeline import PipelineConfig
from cft_ray.core.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"


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


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``section.field`` (any depth) in a config's plain-dict form; sections are made as needed."""
    *sections, leaf = dotted.strip().split(".")
    node = data
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted!r}: {section!r} is a value, not a config section")
    node[leaf] = value


def parse_override(override: str) -> tuple[str, Any]:
    """``section.field=value`` -> (dotted key, YAML-parsed value)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.field=value, e.g. train.learning_rate=1e-5")
    dotted, raw = override.split("=", 1)
    return dotted, yaml.safe_load(raw) if raw.strip() else ""


def validate(data: dict[str, Any], what: str = "invalid config") -> PipelineConfig:
    """A :class:`PipelineConfig` from its plain-dict form, or a :class:`ConfigError` per bad field."""
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, what)) from None


def apply_overrides(base: PipelineConfig, overrides: dict[str, Any], what: str | None = None) -> PipelineConfig:
    """``base`` with dotted-key values set, validated like any config (``base`` is untouched)."""
    data = base.model_dump(mode="json")
    for dotted, value in overrides.items():
        set_dotted(data, dotted, value)
    return validate(data, what or f"{overrides} is not a valid config")


def _format_validation_error(exc: ValidationError, what: str) -> str:
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
    return f"{what}:\n" + "\n".join(lines)


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
        set_dotted(data, *parse_override(override))
    config = validate(data)
    if check_hardware:
        hardware.check_gpus(config)
    return config
