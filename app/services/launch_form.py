"""The launch form's adapter: its values -> a job config, and what it offers (models, size parameters, recipes).

:func:`build_config` turns the launch form's values into a :class:`jobs.pipeline.PipelineJobConfig`, or a
:class:`core.configs.BaselineJobConfig` for the classic baselines (raising :class:`core.errors.ConfigError` that
lists every bad field). The model registry (:func:`core.models.get_model`: size parameters, recipe),
:data:`TRAIN_OPTIONS` and :func:`recipe_defaults` say which advanced controls the form shows and their defaults, so
the form and the CLI describe the same jobs. :func:`preflight` is :func:`jobs.preflight.check` with the cluster the
form shows: the same report the CLI and the runner show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.configs import BaselineJobConfig
from core.data.scene import Scene
from core.errors import ConfigError
from core.models import Param, get_model, list_models
from core.tasks import get_task, list_tasks
from core.training.config import TrainJobConfig
from core.training.schemes import get_scheme, list_schemes
from jobs.pipeline import PipelineJobConfig, pipeline_parts
from jobs.preflight import ClusterFacts, PreflightReport, Probe, check

BASELINES: dict[str, str] = {"rf": "random forest", "knn": "k-nearest neighbours", "svm": "RBF support vector machine"}
"""Classic per-pixel baselines the launch form offers next to the deep models (a ``baseline`` job on patches)."""


TRAIN_OPTIONS = (
    "optimizer",
    "momentum",
    "warmup_epochs",
    "lr_decay_epochs",
    "lr_decay_at",
    "lr_decay_factor",
    "patience",
    "augment",
    "ema_decay",
    "mixup_alpha",
    "label_fraction",
    "worker_speeds",
    "calibration_steps",
    "max_restarts",
    "restart_wait_s",
)
"""The :class:`core.training.config.TrainJobConfig` fields the form passes in ``PipelineJobConfig.train_options``."""


def launch_models() -> dict[str, str]:
    """What the launch form offers: each registered model -> its task, and each classic baseline -> ``"baseline"``."""
    return {**{m: get_model(m).task for m in list_models()}, **{m: "baseline" for m in BASELINES}}


def model_params(model: str) -> tuple[Param, ...]:
    """The size parameters the form offers for ``model`` (its registered :attr:`ModelSpec.params`); none for
    baselines."""
    return () if model in BASELINES else get_model(model).params


def recipes() -> dict[str, dict[str, Any]]:
    """Named training recipes the form can preset (:data:`TRAIN_OPTIONS` values): those of the registered models."""
    return {spec.recipe.name: dict(spec.recipe.fields) for spec in map(get_model, list_models()) if spec.recipe}


def recipe_defaults(recipe: str | None = None) -> dict[str, Any]:
    """Defaults of the :data:`TRAIN_OPTIONS` controls: :class:`TrainJobConfig`'s, overlaid with a named recipe.

    Raises:
        ConfigError: ``recipe`` is not one of :func:`recipes`.
    """
    known = recipes()
    if recipe is not None and recipe not in known:
        raise ConfigError(f"training recipe {recipe!r} is unknown; choose one of {sorted(known)} or none")
    fields = TrainJobConfig.model_fields
    return {**{k: fields[k].default for k in TRAIN_OPTIONS}, **known.get(recipe or "", {})}


def _numbers(value: Any, name: str, cast: type, problems: list[str]) -> tuple[Any, ...] | None:
    """A tuple of numbers from a comma-separated text (or a sequence); None when empty."""
    if value is None or isinstance(value, str) and not value.strip():
        return None
    parts = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    try:
        return tuple(cast(str(p).strip()) for p in parts)
    except ValueError:
        problems.append(
            f"{name}: {value!r} is not a comma-separated list of {cast.__name__} numbers (e.g. "
            f"{'1000, 500' if cast is int else '0.3, 0.6, 0.8'})"
        )
        return None


def _model_params(model: str, given: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    specs = {p.name: p for p in model_params(model)}
    out: dict[str, Any] = {}
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None:
            problems.append(
                f"model_params.{name}: model {model!r} has no size parameter {name!r}; it takes "
                f"{sorted(specs) or 'none'}"
            )
            continue
        if isinstance(spec.default, tuple):
            value = _numbers(value, f"model_params.{name}", int, problems)
            if value is None:
                continue
        cast = type(spec.default[0] if isinstance(spec.default, tuple) else spec.default)
        try:
            items = tuple(cast(v) for v in (value if isinstance(value, tuple) else (value,)))
        except (TypeError, ValueError):
            items = ()
        if not items or any(not spec.low <= v <= spec.high for v in items):
            problems.append(
                f"model_params.{name}: {value!r} is not a number in [{spec.low:g}, {spec.high:g}]; "
                f"give the {spec.label.lower()} in that range (default {spec.default!r})"
            )
            continue
        out[name] = items if isinstance(spec.default, tuple) else items[0]
    return out


def _only_for() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Option -> (``"task"`` or ``"scheme"``, the tasks / schemes that read it), from the task and scheme
    registries. ``worker_speeds``: :func:`core.training.schemes.check_combination` says so itself."""
    tasks = {t: get_task(t).train_options for t in list_tasks()}
    by_task = {o: ("task", tuple(t for t, opts in tasks.items() if o in opts)) for opts in tasks.values() for o in opts}
    schemes = {n: get_scheme(n).options for n in list_schemes()}
    by_scheme = {
        o: ("scheme", tuple(n for n, opts in schemes.items() if o in opts))
        for opts in schemes.values()
        for o in opts
        if o != "worker_speeds"
    }
    return {**by_task, **by_scheme}


def _train_options(values: dict[str, Any], task: str, problems: list[str]) -> dict[str, Any]:
    opts = {k: values[k] for k in TRAIN_OPTIONS if values.get(k) is not None}
    if "worker_speeds" in opts:
        opts["worker_speeds"] = _numbers(opts["worker_speeds"], "worker_speeds", float, problems)
    if "lr_decay_at" in opts:
        at = opts["lr_decay_at"] = _numbers(opts["lr_decay_at"], "lr_decay_at", float, problems)
        if at and (any(not 0 < f < 1 for f in at) or list(at) != sorted(at)):
            problems.append(
                f"lr_decay_at: {list(at)} must be increasing fractions of the epochs between 0 and 1 "
                "(the ResNet recipe: 0.3, 0.6, 0.8)"
            )
    if opts.get("lr_decay_epochs") == 0:  # the form's "0 = no step decay"
        opts["lr_decay_epochs"] = None
    where = {"task": task, "scheme": values.get("scheme")}
    for name, (what, owners) in _only_for().items():
        if values.get(name) is not None and where[what] not in owners:
            listed = " or ".join(repr(o) for o in owners)
            problems.append(f"{name}: only used when the {what} is {listed}, not {where[what]!r}; remove it")
    return {k: v for k, v in opts.items() if v is not None}


def _common(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The AOI and split of the form's values, as config dicts."""
    aoi = {"geometry": values.get("aoi"), "crs": values.get("aoi_crs", "EPSG:4326")}
    split = {
        "method": values.get("split_method", "spatial"),
        "fractions": tuple(values.get("fractions", (0.6, 0.2, 0.2))),
        "test_date": values.get("test_date") or None,
    }
    # left out when not given: pre-flight derives them from the sample size and the AOI (jobs.settle)
    for key, name in (("block_size", "block_size"), ("buffer", "buffer"), ("seed", "split_seed")):
        value = values.get(name)
        if value not in (None, "") and not (key == "block_size" and value == 0):
            split[key] = value  # validated (and quoted when wrong) by SplitConfig
    return aoi, split


def _baseline_data(values: dict[str, Any]) -> dict[str, Any]:
    """A baseline job that tiles the AOI into patches first; it maps the AOI (the test date for a date split)."""
    aoi, split = _common(values)
    tile: dict[str, Any] = {
        "scene": values.get("scene"),
        "aoi": aoi,
        "mode": "patches",
        "split": split,
        "sampling": {"patch_size": int(values.get("size") or 0), "per_class": values.get("per_class") or None},
    }
    data: dict[str, Any] = {
        "scene": values.get("scene"),
        "tile_job": tile,
        "method": values.get("model"),
        "aoi": aoi,
        "predict": values.get("predict", True),
        "date": split["test_date"] if split["method"] == "date" else None,
    }
    data.update({k: values[k] for k in ("features", "max_train_samples") if values.get(k) is not None})
    if values.get("scheduler_address"):
        data["cluster"] = tile["cluster"] = {"scheduler_address": values["scheduler_address"]}
    return data


def _pipeline_data(values: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The :class:`PipelineJobConfig` fields of the form's values for a registered model."""
    model = values["model"]
    task = get_task(get_model(model).task)
    aoi, split = _common(values)
    data: dict[str, Any] = {
        "scene": values.get("scene"),
        "aoi": aoi,
        "model": model,
        "scheme": values.get("scheme"),
        "num_workers": values.get("num_workers"),
        "epochs": values.get("epochs") or None,  # the form's 0 = sized by the step budget
        "batch_size": values.get("batch_size"),
        "learning_rate": values.get("learning_rate"),
        "split": split,
        "model_params": _model_params(model, dict(values.get("model_params") or {}), problems),
        "train_options": _train_options(values, task.name, problems),
    }
    if values.get("mp_split") is not None:
        data["mp_split"] = values["mp_split"]
    if values.get("seams") is not None:
        data["seams"], data["overlap"] = values["seams"], values.get("overlap")
    size = int(values.get("size") or 0)
    if task.tiles:
        if size:  # 0: the largest tile up to 64 px that the AOI's split allows (jobs.settle)
            data["tiling"] = {"tile_size": size}
    else:
        data["sampling"] = {"patch_size": size, "per_class": values.get("per_class") or None}
    if values.get("scheduler_address"):
        data["cluster"] = {"scheduler_address": values["scheduler_address"]}
    return data


def _pipeline_config(values: dict[str, Any], problems: list[str]) -> PipelineJobConfig:
    """The validated pipeline of the form's values; problems the config cannot see go to ``problems``."""
    config = PipelineJobConfig.model_validate(_pipeline_data(values, problems))
    pipeline_parts(config, Path("store.zarr"))  # the train options are validated as the run will
    context = get_model(config.model).context_for(config.model_params)
    tile = config.tiling.tile_size
    if get_task(config.task).tiles and tile % context.align:
        problems.append(
            f"tiling.tile_size: a {tile}-px tile is not divisible by {context.rule}; use a tile size that "
            f"is a multiple of {context.align} or smaller model size parameters"
        )
    return config


def build_config(values: dict[str, Any]) -> PipelineJobConfig | BaselineJobConfig:
    """A validated job config from the launch form's values.

    ``values`` holds ``scene, model, scheme, num_workers, epochs, batch_size, learning_rate, size`` (tile size for
    dense and multi-label models, patch size for patch models and baselines), optional ``aoi`` (GeoJSON in
    EPSG:4326, None = whole scene), ``split_method`` ("spatial"/"date"), ``fractions`` (train, val, test),
    ``test_date``, ``per_class``. Advanced, all optional: ``model_params`` (see :func:`model_params`; tuples may be
    comma-separated text), ``mp_split`` (scheme "model_parallel" only), ``seams`` and ``overlap`` (dense
    prediction, see :class:`core.configs.PredictJobConfig`), the :data:`TRAIN_OPTIONS` (``lr_decay_at``
    and ``worker_speeds`` may be comma-separated text; ``lr_decay_epochs`` 0 = none; ``label_fraction`` for
    multi-label models, ``worker_speeds`` / ``calibration_steps`` for scheme "heterogeneous" only).

    A model of :data:`BASELINES` gives a :class:`BaselineJobConfig` whose ``tile_job`` samples patches of ``size``
    from the same AOI and split (``features``, ``max_train_samples`` and ``predict`` optional; the deep-model
    fields are not used). Otherwise a :class:`PipelineJobConfig`, whose train options are checked by building
    the run's :class:`TrainJobConfig` (:func:`jobs.engine_kinds.pipeline_parts`).

    Raises:
        ConfigError: listing every invalid field with what is expected.
    """
    problems: list[str] = []
    model = values.get("model", "")
    config: PipelineJobConfig | BaselineJobConfig | None = None
    try:
        if model in BASELINES:
            config = BaselineJobConfig.model_validate(_baseline_data(values))
        elif model not in list_models():
            problems.append(f"model: {model!r} is unknown; choose one of {list(launch_models())}")
        else:
            config = _pipeline_config(values, problems)
    except ValidationError as exc:
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "config"
            problems.append(f"{loc}: {e['msg'].removeprefix('Value error, ')} (got {e.get('input')!r:.80})")
    if problems or config is None:
        raise ConfigError("the launch settings are not valid:\n" + "\n".join(f"- {x}" for x in problems))
    return config


def preflight(
    config: PipelineJobConfig | BaselineJobConfig,
    scene: Scene,
    cluster_workers: int | None = None,
    worker_memory_bytes: int | None = None,
    probe: Probe | None = None,
) -> PreflightReport:
    """:func:`jobs.preflight.check` of ``config`` on ``scene`` with the cluster the form shows.

    Args:
        cluster_workers: workers of the cluster the job will use (None: the cluster could not be reached).
        worker_memory_bytes: the smallest worker memory limit (None or 0: unknown / unlimited).
        probe: probes every worker for the job's needs (None: not probed).
    """
    return check(config, scene=scene, cluster=ClusterFacts(cluster_workers, worker_memory_bytes), probe=probe)
