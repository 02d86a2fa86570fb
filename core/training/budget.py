"""How long a training job runs: a step budget sized by the data, validation rounds, and the cap a user sets.

A job that leaves ``epochs`` unset (the default) is sized by work, not by a fixed epoch count: it runs
:func:`step_budget` optimizer steps, derived from the number of training samples and the global batch (``PASSES``
passes over the data, at least ``MIN_STEPS`` and at most ``MAX_STEPS``), split into ``ROUNDS`` validation rounds.
Early stopping counts rounds without a better validation loss (``patience`` rounds, and at least half the rounds, of
``steps_per_epoch`` steps each), so it is measured in steps whatever the data size (on strzegom, stopping after 5
rounds lost 3 points of OA and of macro F1 to stopping after 10); the learning rate follows a cosine over the budget
(:func:`core.training.schedule.learning_rate`). A job that sets ``epochs`` runs that many passes over its shard, as
before. ``max_steps`` caps the optimizer steps either way (tests and quick runs set it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.training.config import TrainJobConfig

PASSES = 100
"""Passes over the training samples a default job aims for (random windows and flips make each pass differ)."""
MIN_STEPS = 600
"""Fewest optimizer steps of a default job: small stores still need this many updates to converge."""
MAX_STEPS = 3000
"""Most optimizer steps of a default job (about 10 minutes of a small model on 2 local workers)."""
ROUNDS = 20
"""Validation rounds of a default job: early stopping and checkpoints happen every ``budget / ROUNDS`` steps."""


@dataclass(frozen=True)
class StepPlan:
    """The steps a rank runs: ``epochs`` rounds of ``steps_per_epoch`` steps (``total_steps`` in all).

    ``budget``: True when the steps come from :func:`step_budget` (``epochs`` unset), False when the user set them.
    ``patience``: rounds without a better validation loss that stop the job early.
    """

    steps_per_epoch: int
    epochs: int
    budget: bool
    patience: int = 5

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


def step_budget(n_train: int, global_batch: int) -> int:
    """Optimizer steps of a default job on ``n_train`` training samples with ``global_batch`` samples per step:
    ``PASSES`` passes, clipped to ``[MIN_STEPS, MAX_STEPS]``; it grows with the data up to the cap."""
    passes = math.ceil(PASSES * max(n_train, 1) / max(global_batch, 1))
    return int(min(max(passes, MIN_STEPS), MAX_STEPS))


def plan_steps(config: TrainJobConfig, n_train: int, global_batch: int, steps_per_pass: int) -> StepPlan:
    """The rounds and steps of ``config`` on a train split of ``n_train`` samples.

    Args:
        config: the job (``epochs``, ``max_steps``, ``max_steps_per_epoch``).
        n_train: training samples over all ranks.
        global_batch: samples per step over all ranks.
        steps_per_pass: steps of one pass over a rank's shard (the scheme's plan).
    """
    per_pass = max(1, min(steps_per_pass, config.max_steps_per_epoch or steps_per_pass))
    if config.epochs is not None:
        spe, epochs = per_pass, config.epochs
        if config.max_steps is not None and spe * epochs > config.max_steps:
            spe = min(spe, config.max_steps)
            epochs = max(1, config.max_steps // spe)
        return StepPlan(spe, epochs, budget=False, patience=config.patience)
    total = step_budget(n_train, global_batch)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    spe = max(1, math.ceil(total / ROUNDS))
    if config.max_steps_per_epoch:
        spe = min(spe, config.max_steps_per_epoch)
    # the cosine's low-rate end is where the validation loss improves most: wait at least half the rounds for it
    return StepPlan(spe, max(1, total // spe), budget=True, patience=max(config.patience, ROUNDS // 2))


__all__ = ["MAX_STEPS", "MIN_STEPS", "PASSES", "ROUNDS", "StepPlan", "plan_steps", "step_budget"]
