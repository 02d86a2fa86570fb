"""The model registry: every architecture registers one :class:`ModelSpec` when its module is imported.

A module of :mod:`core.models` calls :func:`register_model` at import time; the first :func:`get_model` or
:func:`list_models` imports every module of the package (``pkgutil``), so a new architecture is one new file. Configs, the CLI, the launch form, pre-flight,
training and inference read the registry (:func:`get_model`, :func:`list_models`), never a table of their own.

A model defined outside the package (a plug-in, a test) registers itself the same way; processes that must train or
apply it (Dask workers) must import its module too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.discovery import import_package_modules
from core.errors import ConfigError
from core.tasks.predictors import WindowPredictor


@dataclass(frozen=True)
class Param:
    """A size keyword of a model builder, as a launch-form control: ``low <= value <= high``.

    ``default`` is the builder's default; its type (int, float, tuple of ints) is the control's type.
    """

    name: str
    label: str
    default: Any
    low: float
    high: float


@dataclass(frozen=True)
class Context:
    """What a dense model's output pixel depends on, for tiled prediction without seams.

    Attributes:
        align: tile offsets (label pixels) must be multiples of this so the model's pooling grid lines up with that
            of a whole-scene prediction (``2 ** depth`` for the U-Net); also the divisor of a valid tile side.
        radius: receptive-field radius in pixels (rounded up): an overlap at least this wide gives tiled
            predictions equal to one whole-scene prediction away from the scene edge.
        rule: how ``align`` follows from the model's parameters, for messages (e.g. ``"2**depth = 16 (U-Net
            depth 4)"``).
    """

    align: int = 1
    radius: int = 0
    rule: str = "1"


@dataclass(frozen=True)
class Recipe:
    """A paper's training recipe: :class:`core.training.config.TrainJobConfig` fields the launch form can preset.

    Attributes:
        name: short name (``"resnet"``), unique over the registry.
        label: what the form's switch says.
        fields: the TrainJobConfig fields and values.
    """

    name: str
    label: str
    fields: Mapping[str, Any]


NO_CONTEXT = Context()
"""The context of a model that declares none: any offset, no receptive field beyond the pixel."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        name: the ``model`` field of a train config.
        builder: ``builder(input_shape, num_classes, **model_params) -> keras.Model`` (uncompiled).
        task: the :mod:`core.tasks` task it solves (``"dense"``, ``"patch"``, ``"multilabel"``, ...).
        params: the size keywords the launch form and pre-flight offer, with ranges and the builder's defaults.
        modality: the one modality it reads from a multi-modal scene (None = every modality, or the label grid's
            when ``one_input``).
        one_input: it takes a single input: on a multi-modal scene without ``modality``, it reads the modality of
            the scene's label grid.
        recipe: the paper's training recipe, offered as a one-click preset (None: none).
        lr_per_sample: when set and a config keeps the default learning rate, the base rate of one worker is
            ``lr_per_sample * batch_size`` (the ResNet recipe: 0.1 / 256).
        branches: modalities of the parallel branches a model-parallel scheme may place on their own ranks, in
            rank order (``()``: a single-branch model, which model parallelism cannot split).
        context: ``context(model_params) -> Context`` for dense prediction (None: :data:`NO_CONTEXT`).
        activation_channels: sum of feature-map channels over the layers, per input pixel, at the default width
            (pre-flight's activation-memory estimate; None: the task's figure).
        predictor: how its bundles map a scene (:class:`core.tasks.predictors.WindowPredictor`) when not as its
            task's models do (None: the task's), e.g. a patch model evaluated densely.
        dense_twin: ``dense_twin(model) -> model`` that maps a window to the class of every pixel's patch with the
            same weights (per-pixel models evaluated densely; None: not available).
        description: one line for listings (``python -m jobs models``).
    """

    name: str
    builder: Callable[..., Any]
    task: str
    params: tuple[Param, ...] = ()
    modality: str | None = None
    one_input: bool = False
    recipe: Recipe | None = None
    lr_per_sample: float | None = None
    branches: tuple[str, ...] = ()
    context: Callable[[Mapping[str, Any]], Context] | None = None
    activation_channels: int | None = None
    predictor: WindowPredictor | None = None
    dense_twin: Callable[[Any], Any] | None = None
    description: str = field(default="", compare=False)

    @property
    def store_mode(self) -> str:
        """The tile-store mode it trains on (``"tiles"`` or ``"patches"``), its task's."""
        from core.tasks import get_task

        return get_task(self.task).store_mode

    def defaults(self) -> dict[str, Any]:
        """The builder defaults of :attr:`params`."""
        return {p.name: p.default for p in self.params}

    def context_for(self, model_params: Mapping[str, Any] | None = None) -> Context:
        """The prediction context of this model with ``model_params`` over the defaults."""
        if self.context is None:
            return NO_CONTEXT
        return self.context({**self.defaults(), **(model_params or {})})


_REGISTRY: dict[str, ModelSpec] = {}


def _check_params(spec: ModelSpec) -> None:
    sig = inspect.signature(spec.builder).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values())
    unknown = [p.name for p in spec.params if p.name not in sig and not takes_kwargs]
    if unknown:
        raise ConfigError(
            f"model {spec.name!r} offers size parameters {unknown} that its builder "
            f"{spec.builder.__qualname__} does not take; list only keywords of the builder"
        )
    for p in spec.params:
        declared = sig[p.name].default if p.name in sig else inspect.Parameter.empty
        if declared is not inspect.Parameter.empty and declared != p.default:
            raise ConfigError(
                f"model {spec.name!r}: size parameter {p.name!r} defaults to {p.default!r} but its "
                f"builder's default is {declared!r}; give the builder's default"
            )


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry (registering the same spec again is a no-op); returns it.

    Raises:
        ConfigError: another model is registered under ``spec.name``, or a size parameter is not a keyword of the
            builder (or has another default). The task is looked up when the model is used.
    """
    known = _REGISTRY.get(spec.name)
    if known is not None and known != spec:
        raise ConfigError(
            f"model {spec.name!r} is registered twice ({known.builder.__module__} and "
            f"{spec.builder.__module__}); give the new model another name"
        )
    _check_params(spec)
    _REGISTRY[spec.name] = spec
    return spec


def _discover() -> None:
    """Import every module of :mod:`core.models` once (each architecture registers itself)."""
    import_package_modules("core.models")


def get_model(name: str) -> ModelSpec:
    """The spec of model ``name``.

    Raises:
        ConfigError: no model of that name is registered (the message lists those that are).
    """
    _discover()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ConfigError(
            f"model {name!r} is unknown; choose one of {list_models()} (a new model registers "
            "itself with core.models.register_model in its own module)"
        )
    return spec


def list_models(task: str | None = None) -> list[str]:
    """Names of the registered models (of ``task`` only, when given), in registration order."""
    _discover()
    return [n for n, s in _REGISTRY.items() if task is None or s.task == task]
