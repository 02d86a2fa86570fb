"""What a data-parallel rank takes from rank 0 and what it keeps its own.

Every rank builds the model from its own seed (``seed + rank``), so before the first step the ranks must agree:
:func:`broadcast_from_root` copies rank 0's weights (trainable ones and batch-norm moving statistics) and optimizer
variables to every rank. Keras 3 models also hold random-number state as variables: each ``SeedGenerator`` (one per
``Dropout`` layer and any other random layer) keeps a ``seed_generator_state`` variable, listed in
``model.variables`` but not in ``model.weights``. Copying those too would make every rank draw the same dropout
masks, so the ranks would regularise like one process with a small batch; instead each rank keeps its own stream
(:func:`reseed`), as separate processes do in Horovod's examples. Weights stay bit-identical: the gradients are
averaged and the masks only shape each rank's own gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def seed_states(model: Any) -> list[Any]:
    """The random-number state variables of ``model`` (Keras 3 ``SeedGenerator`` states, each ``[seed, counter]``).

    These are the variables in ``model.variables`` that are not weights (the model is never compiled, so it holds
    no metric variables).
    """
    weight_ids = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weight_ids and "seed_generator_state" in v.path]


def reseed(model: Any, seed: int, rank: int, step: int = 0) -> list[int]:
    """Give every random layer of ``model`` its own seed, derived from (``seed``, ``rank``, ``step``).

    Deterministic, different on every rank and for every layer; ``step`` (the global step training starts at) keeps
    a resumed run from replaying the masks of its first epochs. Returns the seeds, in :func:`seed_states` order.
    """
    states = seed_states(model)
    entropy = [seed % 2**64, rank, step]
    seeds = [int(s) for s in np.random.SeedSequence(entropy).generate_state(len(states), np.uint32)]
    for v, s in zip(states, seeds):
        v.assign(np.array([s, 0], dtype=v.dtype))
    return seeds


def broadcast_from_root(model: Any, optimizer: Any, hvd: Any, telemetry: Any = None, extra: Any = ()) -> None:
    """Copy rank 0's weights and optimizer variables to this rank, leaving its random-number state alone.

    Keras 3 variables break ``hvd.broadcast_variables``, so each value is broadcast and assigned. ``telemetry``
    (a :class:`core.training.telemetry.Telemetry`, optional) counts the traffic; ``extra``: further variables to copy (the
    weight average of :mod:`core.training.weight_average`). Every rank must call this, in the same order.
    """
    import tensorflow as tf

    for i, v in enumerate([*model.weights, *optimizer.variables, *extra]):
        t = tf.convert_to_tensor(v)
        if telemetry is not None:
            telemetry.broadcast(t)
        v.assign(hvd.broadcast(t, 0, name=f"bcast.{i}"))  # Horovod: rank 0's value
