"""The simulated annotators' pieces that the benchmark's numbers rest on: their confusion
matrices, the agreement read from their votes, and the consensus rule the store is checked against."""

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


def test_the_agreement_is_the_studios_report_of_the_votes():
    from datetime import datetime

    from core.team.votes import Vote

    now = datetime.now()
    same = [Vote(face, f"annotator-{k}", NAMES[face % 7], False, now) for face in range(14) for k in range(3)]
    assert agreement(same, {face: NAMES[face % 7] for face in range(14)})["krippendorff_alpha"] == pytest.approx(1.0)
    truth = np.repeat(np.arange(len(NAMES)), 50)
    votes = draw_votes(truth, confusion_matrices(3), np.random.default_rng(1))
    drawn = [Vote(i, f"annotator-{k}", NAMES[votes[k, i]], False, now) for i in range(len(truth)) for k in range(3)]
    report = agreement(drawn, {i: NAMES[t] for i, t in enumerate(truth)})
    assert 0.4 < report["fleiss_kappa"] < 0.8 and 0.4 < report["krippendorff_alpha"] < 0.8
    top = {tuple(sorted(p["classes"])) for p in report["confused_pairs"][:3]}
    assert top == {tuple(sorted(pair)) for pair in (("fear", "surprise"), ("sadness", "neutral"), ("disgust", "anger"))}


def test_the_consensus_is_the_majority_and_a_tie_goes_to_the_newest_vote():
    votes = np.array([[1, 2, 4], [1, 3, 5], [2, 3, 6]])  # three annotators, three faces
    order = np.array([[0, 1, 2], [2, 1, 0], [0, 2, 1]])  # per face, the order the votes were cast
    assert expected_consensus(votes, order).tolist() == [1, 3, 5]
