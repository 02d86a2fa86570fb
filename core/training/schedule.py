"""The learning-rate schedule and the optimizer of a training job (shared by every scheme)."""

from __future__ import annotations

import math
from typing import Any

from core.training.config import TrainJobConfig

COSINE_FLOOR = 0.02
"""The last rate of a budget-sized job's cosine, as a fraction of its peak."""


def base_learning_rate(config: TrainJobConfig) -> float:
    """The learning rate of one worker before scaling by the number of ranks.

    ``config.learning_rate``, except for a model whose spec sets ``lr_per_sample`` when the default rate is kept:
    then ``lr_per_sample * n`` for a per-worker batch of ``n`` (ResNet-50's recipe: ``0.1 * n / 256``, Goyal et al.
    2017), which :func:`learning_rate` scales by ``k`` ranks to ``0.1 * k * n / 256``. (Asking for exactly the
    default rate counts as keeping it.)
    """
    from core.models import get_model

    default = TrainJobConfig.model_fields["learning_rate"].default
    per_sample = get_model(config.model).lr_per_sample
    if per_sample is not None and config.learning_rate == default:
        return per_sample * config.batch_size
    return config.learning_rate


def learning_rate(
    config: TrainJobConfig, size: int, step: int, steps_per_epoch: int, total_steps: int | None = None
) -> float:
    """Learning rate at global ``step`` (0-based) for ``size`` ranks.

    Linear warm-up from ``base`` to ``base * size`` over ``warmup_epochs`` epochs (Goyal et al. 2017; ``base`` from
    :func:`base_learning_rate`), then ``* lr_decay_factor`` at each of the ``lr_decay_at`` fractions of the epochs
    (the ResNet paper's 30/60/80 of 100 epochs is ``(0.3, 0.6, 0.8)``, scaled to the epochs run: the boundaries are
    ``round(f * epochs)``), or else every ``lr_decay_epochs`` epochs. A job sized by its step budget
    (``config.epochs`` None, ``total_steps`` given; :mod:`core.training.budget`) with neither decay set follows a
    half cosine from the peak down to ``COSINE_FLOOR`` of it at ``total_steps``, so the rate fits the budget.
    """
    base = base_learning_rate(config)
    peak = base * size
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return base + (peak - base) * step / warmup_steps
    epoch = step // steps_per_epoch
    epochs = config.epochs or max(1, (total_steps or steps_per_epoch) // steps_per_epoch)
    if config.lr_decay_at:
        passed = sum(epoch >= round(f * epochs) for f in config.lr_decay_at)
        return peak * config.lr_decay_factor**passed
    if config.lr_decay_epochs:
        return peak * config.lr_decay_factor ** (epoch // config.lr_decay_epochs)
    if config.epochs is None and total_steps:
        done = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
        return peak * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * done)))
    return peak


def make_optimizer(config: TrainJobConfig) -> Any:
    """The Keras optimizer ``config.optimizer`` names (its rate is set by the schedule at every step)."""
    import keras

    if config.optimizer == "sgd_nesterov":
        return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum, nesterov=True)
    return keras.optimizers.Adam(learning_rate=config.learning_rate)
