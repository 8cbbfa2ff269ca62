"""The whole CFT loop as one Ray program:

    data (load -> noisy responses -> decontaminate -> teacher critiques -> build)
    -> train -> select checkpoint on ``eval.select_on`` -> full evaluation -> report

Every stage writes under ``<run_dir>/stages/<stage>-<key>/`` where the key hashes the config
sections that decide its output plus its input's key (:class:`cft_ray.steps.StepRunner`): a
rerun skips finished stages, a changed setting reruns only the stages downstream of it, and a
crashed run resumes at the stage that did not finish (stages resume internally too: the
teacher cache, training checkpoints, finished evaluation samples).

``output_dir`` may be object storage (``s3://``, ``gs://``): stages then work in a local working
copy (``work_dir``) and each finished stage is uploaded before its ``_SUCCESS`` marker
(:class:`cft_ray.storage.RunStore`); the teacher cache lives on the object store itself, so a
rerun on another machine skips finished stages (downloading what later stages read) and re-pays
no teacher call.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cft_ray.config import PipelineConfig, section_hash
from cft_ray.steps import StepRunner
from cft_ray.storage import RunStore

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    run_dir: Path  # local: the run, or the working copy of one on object storage
    run_uri: str | None  # the run on object storage, if it lives there
    report: Path
    stages: dict[str, dict[str, Any]]  # stage -> seconds, skipped, key
    results: dict[str, Any]  # stage -> its JSON result


def _section(config: PipelineConfig, *names: str) -> list[Any]:
    return [getattr(config, name).model_dump(mode="json") for name in names]


def stage_keys(config: PipelineConfig) -> dict[str, str]:
    """Each stage's key: its own config sections plus the key of the stage it reads."""
    data = section_hash([*_section(config, "model", "data", "teacher"), config.eval.data_dir, config.eval.benchmarks])
    train = section_hash([data, *_section(config, "model", "train")])
    evaluation = section_hash([train, *_section(config, "eval")])
    return {"data": data, "train": train, "select": evaluation, "evaluate": evaluation}


def training_set(data_result: dict[str, Any], config: PipelineConfig) -> str:
    """The built dataset the trainer reads: the method's set, or its largest subset."""
    datasets = data_result["datasets"]
    method = config.train.method
    sizes = sorted(config.data.subset.sizes)
    name = f"{method}/{sizes[-1]}" if sizes else method
    if name not in datasets:
        raise ValueError(
            f"train.method={method!r} with data.subset.sizes={sizes} needs the {name!r} dataset, but the "
            f"data stage built only {sorted(datasets)}; add {method!r} to data.builders (and a subset "
            "strategy other than 'all' for sizes)"
        )
    return datasets[name]


def _select(checkpoints: list[tuple[str, str]], config: PipelineConfig, eval_dir: Path) -> dict[str, Any]:
    from cft_ray.eval import select_checkpoint

    best, curve = select_checkpoint(checkpoints, config.eval, eval_dir)
    return {
        "best": next(point for point in curve if point["name"] == best),
        "curve": curve,
        "curve_png": str(eval_dir / "selection_curve.png"),
    }


def run_pipeline(config: PipelineConfig) -> PipelineResult:
    from cft_ray.data.pipeline import build_datasets
    from cft_ray.eval import evaluate
    from cft_ray.raycluster import connect
    from cft_ray.report import write_report
    from cft_ray.train import train

    started = time.perf_counter()
    run_dir = config.run_dir
    store = RunStore(config.run_uri, run_dir) if config.run_uri else None
    if store and config.teacher.cache_dir is None:
        # Paid answers go straight to the run's storage: a rerun anywhere re-pays nothing.
        teacher = config.teacher.model_copy(update={"cache_dir": f"{config.run_uri}/teacher-cache"})
        config = config.model_copy(update={"teacher": teacher})
    config.write_resolved(run_dir)
    _publish(store, "config.yaml", "config.sha256")
    connect_started = time.perf_counter()
    connect(config.ray)
    ray_startup_s = time.perf_counter() - connect_started
    keys = stage_keys(config)
    steps = StepRunner(run_dir / "stages", "pipeline", store)

    steps.run("data", keys["data"], lambda out: asdict(build_datasets(config, out)))
    dataset = training_set(steps.results["data"], config)
    steps.run("train", keys["train"], lambda out: train(config, dataset, out).to_json())
    checkpoints = [(f"step-{step}", path) for step, path in steps.results["train"]["checkpoints"]]
    # Selection and the final evaluation share one folder of graded samples, so the best
    # checkpoint's selection-benchmark samples are not generated twice.
    eval_dir = steps.work / f"eval-{keys['evaluate']}"
    steps.run("select", keys["select"], lambda out: _select(checkpoints, config, eval_dir), also=(eval_dir,))
    best = steps.results["select"]["best"]
    steps.run("evaluate", keys["evaluate"],
              lambda out: evaluate([(best["name"], best["path"])], config.eval, eval_dir).to_json(),
              also=(eval_dir,))

    report = write_report(config, steps.results, steps.timings, run_dir / "report")
    summary = {
        "config_sha256": config.sha256(),
        "seconds": round(time.perf_counter() - started, 2),
        "ray_startup_seconds": round(ray_startup_s, 2),
        "stages": steps.timings,
        "report": str(report),
    }
    (run_dir / "pipeline.json").write_text(json.dumps(summary, indent=2))
    _publish(store, "report", "pipeline.json")
    return PipelineResult(run_dir=run_dir, run_uri=config.run_uri, report=report, stages=steps.timings,
                          results=steps.results)


def _publish(store: RunStore | None, *names: str) -> None:
    """Upload files or folders of the run's top level when the run lives on object storage."""
    for name in names if store else ():
        store.upload(name)


def print_summary(result: PipelineResult) -> None:
    """What the run did, one line a stage, for the terminal."""
    print(f"\ncft-ray pipeline: {result.run_uri or result.run_dir}")
    for stage, timing in result.stages.items():
        state = "skipped (done before)" if timing["skipped"] else "ran"
        print(f"  {stage:9s} {state:22s} {timing['seconds']:8.1f} s   key {timing['key']}")
    print(f"  report:   {result.report}")
