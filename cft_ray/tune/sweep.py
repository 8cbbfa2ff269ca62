"""Ray Tune sweeps over data size x teacher x method x any config field.

The Ray 2.60 way: ``Tuner(trainable=run_trial)`` where ``run_trial`` is a plain function that
applies its grid point to the base :class:`PipelineConfig`, trains the chosen method on its
nested data subset (``cft_ray.train.train`` builds the ``TorchTrainer``), selects the
checkpoint, evaluates it, and reports the scores with ``ray.tune.report``.

The data stages (load, critiques, build) run ONCE before the Tuner, per distinct data-shaping
grid point (a teacher sweep needs one build per teacher; a size or method sweep needs one build
in all), building every swept method and every swept size as nested subsets. Trials only pick
a folder. Each trial reserves ``tune.trial_cpus`` for its driver; the trainer and the eval
engines request their own workers, so concurrency is capped by GPUs, not by Tune's CPUs.

A sweep started again with the same name resumes: finished trials are kept, unfinished and
failed ones run again, and each stage skips what it has already written.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow.fs
import yaml

from cft_ray.config import SIZE_KEY, ConfigError, PipelineConfig, apply_overrides, validate
from cft_ray.core.checkpoints import Checkpoint
from cft_ray.stages import STAGES, SweepResult, run_stage, stage_key
from cft_ray.storage import as_uri
from cft_ray.tune.analysis import BASE_CONFIG_FILE

log = logging.getLogger(__name__)

# The sweep builds the union of its groups' builders and subset sizes in one build, so these
# two data fields never split grid points into separate builds.
UNIONED_DATA_FIELDS = ("data.builders", SIZE_KEY)


def check_point(config: PipelineConfig) -> None:
    """Refuse what would silently train on the wrong data: sizes without a subset strategy."""
    subset = config.data.subset
    if subset.sizes and subset.strategy == "all":
        raise ConfigError(
            f"data.subset.sizes={subset.sizes} with data.subset.strategy='all' builds no subsets, so every "
            "trial would train on all rows; set data.subset.strategy to 'random' or 'longest'"
        )


def grid(param_space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every grid point, in Tune's order (the last key varies slowest)."""
    keys = list(param_space)
    return [dict(zip(keys, values)) for values in itertools.product(*(param_space[k] for k in keys))]


def data_key(base: PipelineConfig, overrides: dict[str, Any]) -> str:
    """Which shared data build a grid point uses: the data stage's key (from the stage contract)
    of the point's config, leaving out the fields the shared build takes the union of."""
    point = apply_overrides(base, {k: v for k, v in overrides.items() if k != SIZE_KEY})
    return stage_key(STAGES["data"], point, exclude=UNIONED_DATA_FIELDS)


def _training_set(datasets: dict[str, str], config: PipelineConfig) -> str:
    from cft_ray.data import training_set

    return training_set(datasets, config.train.method, config.data.subset.sizes)


def prepare_data(base: PipelineConfig, points: list[dict[str, Any]], root: Path) -> dict[str, dict[str, str]]:
    """Run the data stage once per group of points that can share a build; returns data key ->
    {dataset name: folder}."""
    groups: dict[str, list[PipelineConfig]] = {}
    for point in points:
        groups.setdefault(data_key(base, point), []).append(apply_overrides(base, point))
    datasets = {}
    for key, configs in groups.items():
        sizes = sorted({s for c in configs for s in c.data.subset.sizes})
        builders = list(dict.fromkeys([*configs[0].data.builders, *(c.train.method for c in configs)]))
        build = configs[0].model_copy(update={"data": configs[0].data.model_copy(
            update={"builders": builders, "subset": configs[0].data.subset.model_copy(update={"sizes": sizes})})})
        log.info("sweep data %s: builders %s, sizes %s", key, builders, sizes or "all")
        datasets[key] = run_stage("data", build, root / key).datasets
        for trial_config in configs:  # fail now, not inside a trial, if a training set is missing
            _training_set(datasets[key], trial_config)
    return datasets


def trial_metrics(per_benchmark: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Eval's scores of one checkpoint (benchmark -> {strict, cft_compat, ...}) as a flat Tune
    result: ``<bench>`` is the cft_compat accuracy (the mode the paper's numbers used),
    ``strict/<bench>`` the strict one; ``avg`` is eval's six-benchmark AVG when it gives one,
    else the plain mean of the benchmarks scored."""
    metrics: dict[str, float] = {}
    for bench, scores in per_benchmark.items():
        name = "avg" if bench == "AVG" else bench
        metrics[name], metrics[f"strict/{name}"] = float(scores["cft_compat"]), float(scores["strict"])
    if "AVG" not in per_benchmark:
        for prefix in ("", "strict/"):
            values = [metrics[f"{prefix}{bench}"] for bench in per_benchmark]
            metrics[f"{prefix}avg"] = round(sum(values) / len(values), 1)
    return metrics


def run_trial(overrides: dict[str, Any], base: dict[str, Any], datasets: dict[str, dict[str, str]],
              trials_root: str) -> None:
    """One trial: train the method on its subset -> select a checkpoint -> evaluate -> report."""
    from ray import tune

    context = tune.get_context()
    base_config = PipelineConfig.model_validate(base)
    config = apply_overrides(base_config, overrides)
    out = Path(trials_root) / context.get_trial_name()
    config.write_resolved(out)
    dataset = _training_set(datasets[data_key(base_config, overrides)], config)
    log.info("trial %s: %s on %s", context.get_trial_id(), config.train.method, dataset)

    trained = run_stage("train", config, out / "train", dataset=dataset)
    # One folder for both, so the best checkpoint's selection samples are not generated twice.
    selected = run_stage("select", config, out / "eval", checkpoints=trained.checkpoints)
    best = Checkpoint(name=selected.best.name, path=selected.best.path, step=selected.best.step)
    evaluation = run_stage("evaluate", config, out / "eval", checkpoints=[best])
    tune.report({
        **trial_metrics(evaluation.scores[best.name]),
        "train/rows": trained.data.get("rows", 0),
        "train/steps": trained.total_steps,
        "train/checkpoint_step": best.step,
    })


def _concurrency(config: PipelineConfig) -> int:
    """Trials at once: as many as the cluster's GPUs hold (training and eval run in turn
    inside a trial, so it needs the larger of the two); one on a CPU cluster."""
    import ray

    if config.tune.max_concurrent_trials:
        return config.tune.max_concurrent_trials
    t, e = config.train, config.eval
    per_trial = max(t.num_workers if t.use_gpu else 0, e.num_engines * e.tensor_parallel_size if e.use_gpu else 0)
    if per_trial == 0:
        return 1
    gpus = int(ray.cluster_resources().get("GPU", 0))
    return max(1, gpus // per_trial)


def _file(uri_or_path: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """A file of the experiment folder, local or on s3:// / gs://."""
    return pyarrow.fs.FileSystem.from_uri(as_uri(uri_or_path))


def _save_base_config(experiment: str, config: PipelineConfig, resuming: bool) -> None:
    """Keep the base config beside the trials; a resumed sweep must have the same one, or
    its finished and new trials would not be comparable."""
    fs, path = _file(f"{experiment}/{BASE_CONFIG_FILE}")
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    if resuming and fs.get_file_info(path).type == pyarrow.fs.FileType.File:
        with fs.open_input_stream(path) as f:
            saved = validate(yaml.safe_load(f.read().decode()), f"{experiment}/{BASE_CONFIG_FILE}")
        if saved.sha256() != config.sha256():
            raise ConfigError(
                f"{experiment} was started with another config (sha256 {saved.sha256()} vs {config.sha256()}); "
                "set tune.name to start a new sweep, or rerun with the saved one: "
                f"--config {experiment}/{BASE_CONFIG_FILE}"
            )
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def sweep(config: PipelineConfig) -> SweepResult:
    """Run (or resume) the sweep in ``config.tune``; returns the experiment folder and best trial."""
    import ray
    from ray import tune

    from cft_ray.raycluster import connect

    space = config.tune.param_space
    if not space:
        raise ConfigError("tune.param_space is empty; give e.g. --grid train.method=[cft,sft] --grid data.subset.sizes=[16,32]")
    points = grid(space)
    for point in points:  # every grid point must be a valid config before anything runs
        check_point(apply_overrides(config, point, f"sweep point {point} is not a valid config"))
    config = config.with_teacher_cache()  # every grid point's data build shares the run's answers
    connect(config.ray)
    # Tune moves each trial into its own folder by default; keep the driver's working
    # directory so relative paths in the config (data files, the run folder) mean the same.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")

    name = config.tune.name or f"{config.name}-sweep"
    storage = config.ray.storage_path or str((config.run_dir / "tune").resolve())
    experiment = f"{storage.rstrip('/')}/{name}"
    resuming = tune.Tuner.can_restore(experiment)
    _save_base_config(experiment, config, resuming)
    log.info("sweep %s: %d trials over %s", name, len(points), ", ".join(f"{k} ({len(v)})" for k, v in space.items()))

    datasets = prepare_data(config, points, (config.run_dir / "sweep-data").resolve())
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, base=config.model_dump(mode="json"), datasets=datasets,
            trials_root=str((config.run_dir / "sweep-trials" / name).resolve()),
        ),
        # Trial drivers stay on this node, which holds the data built above (and the trial
        # folders); the trainer's and the eval engines' workers go wherever the GPUs are.
        {"cpu": config.tune.trial_cpus, f"node:{ray.util.get_node_ip_address()}": 0.01},
    )
    if resuming:
        log.info("resuming sweep %s: finished trials are kept, the others run again", experiment)
        tuner = tune.Tuner.restore(experiment, trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={k: tune.grid_search(v) for k, v in space.items()},
            tune_config=tune.TuneConfig(
                metric=config.tune.metric, mode=config.tune.mode, max_concurrent_trials=_concurrency(config),
            ),
            run_config=tune.RunConfig(
                name=name, storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=config.tune.max_failures),
            ),
        )
    results = tuner.fit()
    ok = [r for r in results if r.error is None and config.tune.metric in (r.metrics or {})]
    best = results.get_best_result() if ok else None
    return SweepResult(
        experiment_dir=experiment, num_trials=len(results), num_errors=len(results.errors),
        best_config=best.config if best else None,
        best_metrics={k: v for k, v in best.metrics.items() if k != "config"} if best else None,
    )
