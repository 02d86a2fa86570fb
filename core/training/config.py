"""The train job's config: the schema of :mod:`core.configs` checked against the model and scheme registries.

The checks live with training, not in :mod:`core.configs`, because they read registries of higher layers than the
plain schemas (core/ is a one-way chain of subpackages, docs/ARCHITECTURE.md): the model registry
(:mod:`core.models`) and the scheme registry with its combination rules (:mod:`core.training.schemes`).
"""

from __future__ import annotations

from pydantic import model_validator

from core.configs import TrainJobSchema
from core.models import get_model
from core.training.schemes.api import check_combination, get_scheme


class TrainJobConfig(TrainJobSchema):
    """Train a model on a tile store with one of the registered parallelism schemes (``scheme``).

    The fields and their meaning: :class:`core.configs.TrainJobSchema`. Building one refuses an unknown model or
    scheme, a combination the scheme refuses (``check``) and fields it refuses (``check_train``), each with a
    ValidationError that says what would work.
    """

    @model_validator(mode="after")
    def _registries(self) -> TrainJobConfig:
        get_model(self.model)  # ConfigError (a ValueError) naming the registered models
        check_combination(self.model, self.scheme, self.num_workers, self.worker_speeds)
        check_train = get_scheme(self.scheme).check_train
        if check_train is not None:
            check_train(self)
        return self
