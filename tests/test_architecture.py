"""The layout's rules, checked on the source: who may import whom, what a config import costs, and
that every config field is declared as shaping some stage's output or as not affecting any.

Layers (a module imports its own layer or lower ones, never higher):

    0 core                         the CFT vocabulary
    1 config                       typed sections
    2 stages storage steps raycluster ratelimit report models testing
    3 data teacher train eval      the stages: each other's package API only, never their modules
    4 tune pipeline                compose the stages
    5 cli                          entry points
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from cft_ray.config import PipelineConfig, StrictModel
from cft_ray.stages import DATA_STEPS, NOT_OUTPUT_SHAPING, STAGES, output_values, pipeline_keys

PACKAGE = Path(__file__).resolve().parents[1] / "cft_ray"
LAYERS = {
    "core": 0, "config": 1,
    "stages": 2, "storage": 2, "steps": 2, "raycluster": 2, "ratelimit": 2, "report": 2, "models": 2, "testing": 2,
    "data": 3, "teacher": 3, "train": 3, "eval": 3,
    "tune": 4, "pipeline": 4,
    "cli": 5,
}
STAGE_PACKAGES = {"data", "teacher", "train", "eval", "tune"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported cft_ray module, line, at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: use absolute imports (the import walk reads them)"
            names = [node.module or ""]
            # `from cft_ray.config import hardware` imports the module cft_ray.config.hardware
            names += [f"{names[0]}.{alias.name}" for alias in node.names
                      if f"{names[0]}.{alias.name}" in _MODULES]
        else:
            continue
        found += [(name, node.lineno, id(node) in top_level) for name in names if name.startswith("cft_ray.")]
    return found


_MODULES = _modules()


def _unit(module: str) -> str:
    """The top-level package or module under cft_ray a module belongs to."""
    return module.split(".")[1]


def _edges() -> list[tuple[str, str, str, int, bool]]:
    """(importer, imported, file, line, at module level) across units."""
    edges = []
    for module, path in _MODULES.items():
        if module == "cft_ray":
            continue
        for imported, line, top in _imports(module, path):
            if imported in ("cft_ray",) or _unit(imported) == _unit(module):
                continue
            edges.append((module, imported, str(path.relative_to(PACKAGE.parent)), line, top))
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _MODULES if m != "cft_ray"}
    assert units == set(LAYERS), f"give each new package or module a layer: {sorted(units ^ set(LAYERS))}"


def test_imports_go_down_the_layers_and_stages_use_each_others_package_api_only():
    wrong = []
    for importer, imported, where, line, _ in _edges():
        a, b = _unit(importer), _unit(imported)
        if LAYERS[b] > LAYERS[a]:
            wrong.append(f"{where}:{line}: {importer} (layer {LAYERS[a]}) imports {imported} (layer {LAYERS[b]})")
        if a in STAGE_PACKAGES and b in STAGE_PACKAGES and imported != f"cft_ray.{b}":
            wrong.append(f"{where}:{line}: stage {a} imports {imported}, a module of stage {b}; use cft_ray.{b}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for importer, imported, path, line, _ in _edges():
        graph.setdefault(_unit(importer), set()).add(_unit(imported))
        where.setdefault((_unit(importer), _unit(imported)), f"{path}:{line} ({importer} -> {imported})")

    def cycle_from(node: str, trail: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in trail:
                return trail[trail.index(nxt):] + [nxt]
            found = cycle_from(nxt, [*trail, nxt])
            if found:
                return found
        return None

    for start in sorted(graph):
        cycle = cycle_from(start, [start])
        assert cycle is None, "import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(
            where[(a, b)] for a, b in zip(cycle, cycle[1:]))


def test_production_code_imports_the_test_servers_only_lazily():
    eager = [f"{where}:{line}: {importer} imports {imported} at module level"
             for importer, imported, where, line, top in _edges()
             if _unit(imported) == "testing" and _unit(importer) != "testing" and top]
    assert not eager, "\n".join(eager)


@pytest.mark.parametrize("module", ["cft_ray.config", "cft_ray.core.benchmarks", "cft_ray.stages"])
def test_light_modules_pull_in_no_heavy_dependency(module):
    heavy = ("ray", "openai", "aiohttp", "torch", "vllm", "deepspeed", "transformers")
    code = f"import sys, {module}; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"import {module} loads {loaded}"


def _leaf_fields(model: type[StrictModel], prefix: str = "") -> list[str]:
    """Dotted paths of every field, descending into sub-sections (lists and dicts are leaves)."""
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, StrictModel):
            out += _leaf_fields(field.annotation, f"{path}.")
        else:
            out.append(path)
    return out


def _covers(declared: str, field: str) -> bool:
    return field == declared or field.startswith(declared + ".")


def test_every_config_field_shapes_an_output_or_is_declared_not_to():
    declared = [f for stage in [*STAGES.values(), *DATA_STEPS.values()] for f in stage.output_fields]
    fields = _leaf_fields(PipelineConfig)
    not_shaping = [f for f in fields if any(_covers(d, f) for d in NOT_OUTPUT_SHAPING)]
    shaping = [f for f in fields if f not in not_shaping and any(_covers(d, f) for d in declared)]
    missing = sorted(set(fields) - set(shaping) - set(not_shaping))
    assert not missing, (f"config fields that no stage declares as output-shaping and NOT_OUTPUT_SHAPING does not "
                         f"list (add each to one of them in cft_ray/stages.py): {missing}")
    stale = [d for d in [*declared, *NOT_OUTPUT_SHAPING] if not any(_covers(d, f) for f in fields)]
    assert not stale, f"declarations naming no config field: {stale}"


def test_keys_follow_the_declarations():
    config = PipelineConfig()
    keys = pipeline_keys(config)
    assert keys["select"] == keys["evaluate"]  # one shared folder of graded samples
    paced = config.model_copy(update={"teacher": config.teacher.model_copy(update={"num_actors": 9})})
    assert pipeline_keys(paced) == keys  # throughput never reruns a stage
    lr = config.model_copy(update={"train": config.train.model_copy(update={"learning_rate": 1e-4})})
    changed = pipeline_keys(lr)
    assert changed["data"] == keys["data"]
    assert changed["train"] != keys["train"] and changed["evaluate"] != keys["evaluate"]
    assert "teacher.num_actors" not in str(output_values(STAGES["data"], config))
