"""Agreement statistics on count matrices: Fleiss' kappa, Krippendorff's alpha, Cohen's kappa,
vote entropy, and how to say a value in words.

Every function takes `counts`, an (items, classes) array whose row i holds how many raters put
item i in each class (a rater may be missing from an item: rows need not sum to the same n).
An undefined statistic is None with the reason, never NaN: `Undefined` carries the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import krippendorff
import numpy as np


@dataclass(frozen=True)
class Undefined:
    """Why a statistic has no value on this data."""

    reason: str


@dataclass(frozen=True)
class FleissKappa:
    overall: float | Undefined
    per_category: list[float | Undefined]  # in the columns' order


def pairable(counts: np.ndarray) -> np.ndarray:
    """The rows with at least two ratings: the only ones agreement can be measured on."""
    counts = np.asarray(counts)
    return counts[counts.sum(axis=1) >= 2]


def fleiss_kappa(counts: np.ndarray) -> FleissKappa:
    """Fleiss' kappa and its per-category kappas, each item with its own number of raters n_i.

    Fleiss, J. L. (1971), "Measuring nominal scale agreement among many raters", Psychological
    Bulletin 76(5), 378-382, with the item's own n_i where the paper has one n for every item:
      P_i = sum_j x_ij (x_ij - 1) / (n_i (n_i - 1)),  P_bar = mean_i P_i,
      p_j = sum_i x_ij / sum_i n_i,  P_e = sum_j p_j^2,  kappa = (P_bar - P_e) / (1 - P_e);
      kappa_j = 1 - [sum_i x_ij (n_i - x_ij) / (n_i (n_i - 1))] / (N p_j q_j),  q_j = 1 - p_j.
    With equal n_i both are exactly the paper's; kappa stays the p_j q_j-weighted mean of the
    kappa_j (as in the paper), and kappa_j equals the kappa of the table "j against the rest".
    Items with fewer than two ratings carry no agreement and are left out.
    """
    table = pairable(counts).astype(np.float64)
    categories = np.asarray(counts).shape[1]
    if table.shape[0] == 0:
        reason = Undefined("no face has votes from two annotators")
        return FleissKappa(reason, [reason] * categories)
    n_i = table.sum(axis=1)
    items = table.shape[0]
    p = table.sum(axis=0) / n_i.sum()
    disagreement = (table * (n_i[:, None] - table) / (n_i * (n_i - 1))[:, None]).sum(axis=0) / items
    spread = p * (1 - p)
    per_category: list[float | Undefined] = [
        float(1 - d / s) if s > 0 else Undefined(_one_sided(q)) for d, s, q in zip(disagreement, spread, p, strict=True)
    ]
    if spread.sum() <= 0:
        return FleissKappa(Undefined("every vote is for one class, so chance agreement is total"), per_category)
    return FleissKappa(float(1 - disagreement.sum() / spread.sum()), per_category)


def nominal_alpha(counts: np.ndarray) -> float | Undefined:
    """Krippendorff's alpha for nominal data, computed by the `krippendorff` package.

    The package is given the value counts (items x classes), which for nominal data is the same
    input as the coders x items reliability matrix with NaN where a coder is missing (the tests
    check both on Krippendorff's own example) and stays small with many annotators."""
    table = pairable(counts)
    if table.shape[0] == 0:
        return Undefined("no face has votes from two annotators")
    if np.count_nonzero(table.sum(axis=0)) < 2:
        return Undefined("every vote is for one class, so expected disagreement is zero")
    return float(krippendorff.alpha(value_counts=table, level_of_measurement="nominal"))


def class_vs_rest_alpha(counts: np.ndarray, column: int) -> float | Undefined:
    """Krippendorff's alpha of the binary data "this class or another"."""
    table = pairable(counts)
    own = table[:, column]
    binary = np.stack([own, table.sum(axis=1) - own], axis=1)
    if table.shape[0] == 0:
        return Undefined("no face has votes from two annotators")
    if not binary[:, 0].any() or not binary[:, 1].any():
        return Undefined(_one_sided(float(binary[:, 0].any())))
    return float(krippendorff.alpha(value_counts=binary, level_of_measurement="nominal"))


def cohen_kappa(confusion: np.ndarray) -> float | Undefined:
    """Cohen's kappa of two raters from their (rater A x rater B) confusion matrix."""
    matrix = np.asarray(confusion, dtype=np.float64)
    total = matrix.sum()
    if total == 0:
        return Undefined("no face to compare")
    observed = np.trace(matrix) / total
    expected = float((matrix.sum(axis=1) * matrix.sum(axis=0)).sum() / total**2)
    if expected >= 1:
        return Undefined("both gave one and the same class to every face, so chance agreement is total")
    return float((observed - expected) / (1 - expected))


def entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Each row's vote entropy in bits: 0 when all votes agree, log2(k) for k classes split evenly."""
    table = np.asarray(counts, dtype=np.float64)
    totals = table.sum(axis=1, keepdims=True)
    shares = np.divide(table, totals, out=np.zeros_like(table), where=totals > 0)
    logs = np.log2(shares, out=np.zeros_like(shares), where=shares > 0)
    return np.asarray(-(shares * logs).sum(axis=1) + 0.0)  # + 0.0: no -0.0 for a unanimous face


def kappa_band(value: float | None) -> str:
    """Landis & Koch (1977)'s words for a kappa."""
    if value is None:
        return "undefined"
    if value < 0:
        return "poor (below chance)"
    for upper, words in ((0.20, "slight"), (0.40, "fair"), (0.60, "moderate"), (0.80, "substantial")):
        if value <= upper:
            return words
    return "almost perfect"


def alpha_band(value: float | None) -> str:
    """Krippendorff (2004)'s advice: rely on alpha >= 0.800, tentative conclusions from 0.667."""
    if value is None:
        return "undefined"
    if value >= 0.800:
        return "reliable"
    if value >= 0.667:
        return "tentative conclusions only"
    return "unreliable"


def _one_sided(share: float) -> str:
    return "no vote for this class" if share == 0 else "every vote is for this class"
