"""The simulated annotators' pieces that the benchmark's numbers rest on: their confusion
matrices, Fleiss' kappa, and the consensus rule the store is checked against."""

from __future__ import annotations

import numpy as np
import pytest

from bench.simulated_annotators import (
    DIAGONAL,
    NAMES,
    PARTNER,
    agreement,
    confusion_matrices,
    draw_votes,
    expected_consensus,
    fleiss_kappa,
)


def test_each_annotator_is_mostly_right_and_errs_towards_the_confusable_partner():
    matrices = confusion_matrices(5)
    assert np.allclose(matrices.sum(axis=2), 1.0)
    diagonal = np.diagonal(matrices, axis1=1, axis2=2)
    assert ((diagonal >= DIAGONAL[0] - 0.05) & (diagonal <= DIAGONAL[1] + 0.05)).all()
    assert len({tuple(np.round(d, 6)) for d in diagonal}) == 5, "each annotator its own accuracies"
    assert np.ptp(diagonal.mean(axis=1)) > 0.03, "some annotators are better than others"
    for name, partner in PARTNER.items():
        t, p = NAMES.index(name), NAMES.index(partner)
        errors = matrices[:, t].copy()
        errors[:, t] = 0
        assert (errors.argmax(axis=1) == p).all() and (errors[:, p] > 0.5 * errors.sum(axis=1)).all()
    truth = np.repeat(np.arange(len(NAMES)), 2000)
    votes = draw_votes(truth, matrices, np.random.default_rng(0))
    empirical = np.array([[np.mean(votes[k, truth == t] == t) for t in range(len(NAMES))] for k in range(5)])
    assert np.abs(empirical - diagonal).max() < 0.04


def test_fleiss_kappa_matches_the_worked_example_and_alpha_sees_perfect_agreement():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa 0.210.
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    votes = np.array([np.repeat(np.arange(5), row) for row in table]).T
    assert fleiss_kappa(votes, 5) == pytest.approx(0.2099, abs=1e-4)
    same = np.tile(np.arange(7), (3, 4))
    assert agreement(same) == pytest.approx({"krippendorff_alpha": 1.0, "fleiss_kappa": 1.0})


def test_the_consensus_is_the_majority_and_a_tie_goes_to_the_newest_vote():
    votes = np.array([[1, 2, 4], [1, 3, 5], [2, 3, 6]])  # three annotators, three faces
    order = np.array([[0, 1, 2], [2, 1, 0], [0, 2, 1]])  # per face, the order the votes were cast
    assert expected_consensus(votes, order).tolist() == [1, 3, 5]
