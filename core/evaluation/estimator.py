"""Stratified estimators of accuracy and area (Olofsson et al. 2013, RSE 129:122-131; 2014, RSE 148:42-57).

Pure numpy. The sample is a stratified random sample with the map classes as strata; ``counts[i, j]`` is the
number of sample points mapped as class ``i`` (row, stratum) whose reference class is ``j`` (column), and
``stratum_sizes[i]`` is the mapped size of stratum ``i`` in any unit (pixels, m², ha): estimated areas come out
in that unit. With ``W_i = N_i / N``, ``n_i. = sum_j n_ij``:

* estimated area proportions ``p_ij = W_i n_ij / n_i.`` (2014 eq. 4), ``p_.j = sum_i p_ij`` (eq. 9);
* ``SE(p_.j) = sqrt(sum_i W_i^2 (n_ij/n_i.)(1 - n_ij/n_i.) / (n_i. - 1))`` (eq. 10), area ``N p_.j`` with SE
  ``N SE(p_.j)`` (eqs. 11-12);
* overall accuracy ``O = sum_j p_jj`` and ``V(O) = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)`` (eqs. 1, 5);
* user's accuracy ``U_i = p_ii / p_i.`` and ``V(U_i) = U_i (1 - U_i) / (n_i. - 1)`` (eqs. 2, 6);
* producer's accuracy ``P_j = p_jj / p_.j`` and its variance (eq. 7) with ``N_.j = sum_i N_i n_ij / n_i.``.

Confidence intervals are ``estimate ± z SE`` (z = 1.96 for 95 %). Strata with no mapped area need no sample;
every stratum with mapped area needs at least two reference points (the variances divide by ``n_i. - 1``).
A ratio with a zero denominator (e.g. the producer's accuracy of a class found nowhere) is NaN (``None`` in JSON).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.evaluation.errors import InsufficientSampleError

Z95 = 1.959963984540054  # standard normal 0.975 quantile


@dataclass(frozen=True)
class StratifiedEstimates:
    """Accuracy and area estimates of a stratified sample; arrays are in ``class_ids`` order.

    Attributes:
        class_ids: the classes (strata = map classes, columns = reference classes).
        counts: ``(K, K)`` sample counts, rows map, columns reference.
        stratum_sizes: ``(K,)`` mapped size of each stratum (unit of the areas).
        proportions: ``(K, K)`` estimated area proportions ``p_ij``.
        overall_accuracy, overall_accuracy_se: ``O`` and its standard error.
        users, users_se: user's accuracy per map class and SE.
        producers, producers_se: producer's accuracy per reference class and SE.
        area_proportion, area_proportion_se: ``p_.j`` and SE.
        area, area_se: error-adjusted area ``N p_.j`` and SE, in the unit of ``stratum_sizes``.
        z: the normal quantile of the confidence intervals.
    """

    class_ids: tuple[int, ...]
    counts: np.ndarray
    stratum_sizes: np.ndarray
    proportions: np.ndarray
    overall_accuracy: float
    overall_accuracy_se: float
    users: np.ndarray
    users_se: np.ndarray
    producers: np.ndarray
    producers_se: np.ndarray
    area_proportion: np.ndarray
    area_proportion_se: np.ndarray
    area: np.ndarray
    area_se: np.ndarray
    z: float = Z95

    def ci(self, value: float | np.ndarray, se: float | np.ndarray) -> tuple[Any, Any]:
        """``(lower, upper) = value ∓ z se``."""
        return value - self.z * se, value + self.z * se

    @property
    def weights(self) -> np.ndarray:
        """``W_i``: share of the mapped size per stratum."""
        return self.stratum_sizes / self.stratum_sizes.sum()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; NaN becomes ``None``."""

        def lst(a: np.ndarray) -> Any:
            return [lst(x) for x in a] if np.ndim(a) > 1 else [_num(v) for v in a]

        return {
            "class_ids": list(self.class_ids),
            "counts": self.counts.astype(int).tolist(),
            "stratum_sizes": lst(self.stratum_sizes),
            "proportions": lst(self.proportions),
            "overall_accuracy": _num(self.overall_accuracy),
            "overall_accuracy_se": _num(self.overall_accuracy_se),
            "users": lst(self.users),
            "users_se": lst(self.users_se),
            "producers": lst(self.producers),
            "producers_se": lst(self.producers_se),
            "area_proportion": lst(self.area_proportion),
            "area_proportion_se": lst(self.area_proportion_se),
            "area": lst(self.area),
            "area_se": lst(self.area_se),
            "z": self.z,
        }


def _num(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def error_matrix(map_classes: Sequence[int], ref_classes: Sequence[int], class_ids: Sequence[int]) -> np.ndarray:
    """``(K, K)`` int64 sample counts, rows map class, columns reference class, in ``class_ids`` order.

    Raises:
        InsufficientSampleError: a map or reference class is not in ``class_ids``.
    """
    index = {int(c): k for k, c in enumerate(class_ids)}
    counts = np.zeros((len(index), len(index)), dtype=np.int64)
    for m, r in zip(map_classes, ref_classes, strict=True):
        if int(m) not in index or int(r) not in index:
            raise InsufficientSampleError(
                f"sample point with map class {int(m)} and reference class {int(r)}: "
                f"expected classes among {list(index)}; fix the labels or the class list"
            )
        counts[index[int(m)], index[int(r)]] += 1
    return counts


def _check_inputs(
    counts: np.ndarray, sizes: np.ndarray, class_ids: Sequence[int], class_names: Sequence[str] | None
) -> None:
    k = len(class_ids)
    if counts.shape != (k, k) or sizes.shape != (k,):
        raise InsufficientSampleError(
            f"counts of shape {counts.shape} and stratum sizes of shape {sizes.shape} do "
            f"not match {k} classes; give a ({k}, {k}) matrix and {k} sizes"
        )
    if (sizes < 0).any() or sizes.sum() <= 0 or (counts < 0).any():
        raise InsufficientSampleError(
            f"stratum sizes {sizes.tolist()} must be >= 0 with a positive total, and counts >= 0"
        )
    names = list(class_names) if class_names is not None else [f"class {c}" for c in class_ids]
    n_i = counts.sum(axis=1)
    for i in range(k):
        if sizes[i] > 0 and n_i[i] < 2:
            raise InsufficientSampleError(
                f"stratum {names[i]!r} (map class {int(class_ids[i])}, mapped size {sizes[i]:g}) has {int(n_i[i])} "
                "reference point(s); the estimator needs at least 2 per mapped class; label more sample points of "
                "that map class"
            )


def stratified_estimates(
    counts: np.ndarray | Sequence[Sequence[int]],
    stratum_sizes: Sequence[float],
    class_ids: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    z: float = Z95,
) -> StratifiedEstimates:
    """Olofsson et al. (2014) stratified estimates from sample counts and mapped stratum sizes (module docstring).

    Args:
        counts: ``(K, K)`` sample counts, rows = map class (stratum), columns = reference class.
        stratum_sizes: ``(K,)`` mapped size of each class (pixels, m², ha, ...): the unit of the returned areas.
        class_ids: the K class ids (default ``1..K``).
        class_names: names used in error messages.
        z: normal quantile of the confidence intervals (1.96 for 95 %).

    Raises:
        InsufficientSampleError: shapes disagree, or a mapped stratum has fewer than 2 reference points (the
            message names the class).
    """
    n = np.asarray(counts, dtype=np.float64)
    sizes = np.asarray(stratum_sizes, dtype=np.float64)
    ids = tuple(int(c) for c in (class_ids if class_ids is not None else range(1, len(sizes) + 1)))
    _check_inputs(n, sizes, ids, class_names)
    w = sizes / sizes.sum()
    n_i = n.sum(axis=1)
    mapped = w > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(mapped[:, None], n / np.where(n_i > 0, n_i, 1.0)[:, None], 0.0)  # n_ij / n_i.
        dof = np.where(mapped, n_i - 1.0, 1.0)
        p = w[:, None] * frac
        p_col = p.sum(axis=0)
        users = np.where(mapped, np.diag(frac), np.nan)
        u0 = np.nan_to_num(users)
        oa = float(np.trace(p))
        oa_se = math.sqrt(float(np.sum(w**2 * u0 * (1 - u0) / dof)))
        users_se = np.where(mapped, np.sqrt(u0 * (1 - u0) / dof), np.nan)
        prop_se = np.sqrt(np.sum((w**2)[:, None] * frac * (1 - frac) / dof[:, None], axis=0))
        producers = np.diag(p) / p_col
        producers_se = _producers_se(frac, sizes, dof, u0, producers)
    total = float(sizes.sum())
    return StratifiedEstimates(
        class_ids=ids,
        counts=n.astype(np.int64),
        stratum_sizes=sizes,
        proportions=p,
        overall_accuracy=oa,
        overall_accuracy_se=oa_se,
        users=users,
        users_se=users_se,
        producers=producers,
        producers_se=producers_se,
        area_proportion=p_col,
        area_proportion_se=prop_se,
        area=p_col * total,
        area_se=prop_se * total,
        z=z,
    )


def _producers_se(
    frac: np.ndarray, sizes: np.ndarray, dof: np.ndarray, users: np.ndarray, producers: np.ndarray
) -> np.ndarray:
    """SE of the producer's accuracies, Olofsson et al. (2014) eq. 7 (NaN where ``P_j`` is undefined)."""
    k = len(sizes)
    n_hat_col = (sizes[:, None] * frac).sum(axis=0)  # N_.j = sum_i N_i n_ij / n_i.
    out = np.full(k, np.nan)
    for j in range(k):
        if not np.isfinite(producers[j]) or n_hat_col[j] <= 0:
            continue
        pj = producers[j]
        first = sizes[j] ** 2 * (1 - pj) ** 2 * users[j] * (1 - users[j]) / dof[j]
        others = [i for i in range(k) if i != j]
        second = pj**2 * float(np.sum(sizes[others] ** 2 * frac[others, j] * (1 - frac[others, j]) / dof[others]))
        out[j] = math.sqrt((first + second) / n_hat_col[j] ** 2)
    return out
