"""The benchmark reports' own arithmetic: paired differences, the active-learning table and the
fine-tune table's head-mode reference rows."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bench.active_learning import bench_only_rank, run_label
from bench.active_learning import render as render_active_learning
from bench.finetune_benchmark import head_reference_runs, labeled_fingerprint, merge_results
from bench.finetune_benchmark import render as render_finetune
from bench.ssl_benchmark import _paired_rows


def _run(method, per_class, seed, accuracy):
    return {"method": method, "labels_per_class": per_class, "seed": seed, "fused": {"accuracy": accuracy}}


def test_paired_rows_difference_seed_by_seed_and_skip_unmatched_seeds():
    runs = [
        _run("sitfer", 25, 0, 0.30),
        _run("sitfer", 25, 1, 0.28),
        _run("sitfer", 25, 2, 0.31),
        _run("fixmatch", 25, 0, 0.29),
        _run("fixmatch", 25, 1, 0.30),  # seed 2 missing: not paired
        _run("supervised, all labels", None, 0, 0.5),
    ]
    lines = _paired_rows(runs, [25])
    row = next(line for line in lines if line.startswith("| fixmatch |"))
    # seed 0: +1.0, seed 1: -2.0 -> mean -0.5, sd 2.1, ahead at 1 of 2
    assert row == "| fixmatch | -0.5 ± 2.1 (1 of 2) |"
    assert not any("all labels" in line for line in lines)


def test_paired_rows_mark_a_size_neither_ran():
    lines = _paired_rows([_run("sitfer", 25, 0, 0.3), _run("fixmatch", 25, 0, 0.2)], [25, 100])
    assert "| fixmatch | +10.0 (1 of 1) | - |" in lines


def _al_run(strategy, seed, accuracies, thresholds=None):
    run = {
        "strategy": strategy,
        "seed": seed,
        "curve": [{"round": r, "labeled": 10 + r, "accuracy": a} for r, a in enumerate(accuracies)],
        "timings": [{"train_s": 1.0, "rank_s": 0.5}] * len(accuracies),
    }
    if thresholds:
        run["thresholds"] = thresholds
    return run


def test_active_learning_table_keeps_threshold_variants_apart():
    settings = {
        "start_per_class": 1,
        "rounds": 2,
        "per_round": 100,
        "steps": 10,
        "seeds": [0],
        "device": "cpu",
        "machine": "m",
        "torch": "t",
        "encoder": "e",
        "train_faces": 100,
        "val_faces": 10,
    }
    runs = [
        _al_run("random", 0, [0.2, 0.3, 0.4]),
        _al_run("near_threshold", 0, [0.2, 0.4, 0.5]),  # records before the option: DTA
        _al_run("near_threshold", 0, [0.2, 0.25, 0.3], thresholds="fixed"),
    ]
    assert run_label(runs[1]) == "near_threshold"
    assert run_label(runs[2]) == "near_threshold (fixed 0.95)"
    body = render_active_learning({"settings": settings, "runs": runs})
    # random reaches its own 0.4 after 200 corrections; DTA's near_threshold at 0.4 after 100
    assert "| near_threshold | 20.0 | 40.0 | 50.0 | 100 (50% of random's) |" in body
    assert "| near_threshold (fixed 0.95) | 20.0 | 25.0 | 30.0 | not reached |" in body


def test_active_learning_table_gives_each_seed_against_its_own_random():
    settings = {
        "start_per_class": 1,
        "rounds": 2,
        "per_round": 100,
        "steps": 10,
        "seeds": [0, 1],
        "device": "cpu",
        "machine": "m",
        "torch": "t",
        "encoder": "e",
        "train_faces": 100,
        "val_faces": 10,
    }
    runs = [
        _al_run("random", 0, [0.2, 0.3, 0.4]),
        _al_run("random", 1, [0.2, 0.4, 0.4]),
        _al_run("margin", 0, [0.2, 0.4, 0.4]),  # seed 0: 100 against random's 200 -> 50%
        _al_run("margin", 1, [0.2, 0.3, 0.35]),
    ]  # seed 1: never reaches 0.4
    body = render_active_learning({"settings": settings, "runs": runs})
    row = next(line for line in body.splitlines() if line.startswith("| margin |"))
    assert "| 50%, - |" in row
    assert next(line for line in body.splitlines() if line.startswith("| random |")).count("| - |") == 1


def test_active_learning_table_compares_a_row_with_random_over_the_rows_own_seeds():
    settings = {
        "start_per_class": 1,
        "rounds": 2,
        "per_round": 100,
        "steps": 10,
        "seeds": [0, 1],
        "device": "cpu",
        "machine": "m",
        "torch": "t",
        "encoder": "e",
        "train_faces": 100,
        "val_faces": 10,
    }
    runs = [
        _al_run("random", 0, [0.2, 0.3, 0.4]),
        _al_run("random", 1, [0.2, 0.4, 0.6]),
        _al_run("margin", 0, [0.2, 0.4, 0.4]),
        _al_run("margin", 1, [0.2, 0.5, 0.7]),
        _al_run("entropy", 0, [0.2, 0.4, 0.4]),
    ]  # seed 0 only: against random's seed 0 (0.4 after 200)
    lines = render_active_learning({"settings": settings, "runs": runs}).splitlines()
    # random over both seeds: 0.2, 0.35, 0.5 -> 0.5 after 200; margin 0.2, 0.45, 0.55 -> after 150
    assert "| 150 (75% of random's) |" in next(line for line in lines if line.startswith("| margin |"))
    entropy = next(line for line in lines if line.startswith("| entropy |"))
    assert "| 100 (50% of random's); random at seeds 0: 40.0 after 200 |" in entropy


def test_oracle_references_pick_the_round_models_errors_by_ground_truth():
    fused = np.array(
        [
            [0.6, 0.3, 0.1],  # truth 1: wrong, 0.3 behind
            [0.5, 0.45, 0.05],  # truth 1: wrong, 0.05 behind
            [0.9, 0.05, 0.05],  # truth 2: wrong, 0.85 behind, lowest p(true)
            [0.4, 0.35, 0.25],  # truth 0: right, margin 0.05
            [0.8, 0.1, 0.1],
        ]
    )  # truth 0: right, margin 0.7
    truth = np.array([1, 1, 2, 0, 0])
    assert bench_only_rank("oracle_near_errors", fused, truth, 5).tolist() == [1, 0, 2, 3, 4]
    assert bench_only_rank("oracle_hardest", fused, truth, 3).tolist() == [2, 0, 3]  # p(true) 0.05, 0.3, 0.4
    # the runner_up trial reads no truth: runner-ups 0.3, 0.45, 0.05, 0.35, 0.1
    assert bench_only_rank("runner_up", fused, truth, 5).tolist() == [1, 3, 0, 4, 2]
    with pytest.raises(ValueError, match="unknown bench-only ranking"):
        bench_only_rank("oracle_nothing", fused, truth, 1)


def _ft_run(mode, method, seed, accuracy, **extra):
    return {
        "mode": mode,
        "method": method,
        "seed": seed,
        "labels_per_class": 25,
        "train_s": 10.0,
        "faces_per_s": 100.0,
        "fused": {"accuracy": accuracy, "balanced_accuracy": accuracy},
        "classifier": {"accuracy": accuracy},
        **extra,
    }


def test_head_reference_takes_only_the_fine_tuned_runs_and_marks_where_they_ran():
    def ssl_run(method, per_class, seed, accuracy, seconds):
        scores = {"accuracy": accuracy, "balanced_accuracy": accuracy}
        return {
            "method": method,
            "labels_per_class": per_class,
            "seed": seed,
            "seconds": seconds,
            "fused": scores,
            "classifier": scores,
        }

    ssl = {
        "settings": {
            "steps": 100,
            "batch_size": 8,
            "unlabeled_ratio": 3,
            "device": "cpu",
            "machine": "laptop",
            "torch": "2.x",
        },
        "runs": [
            ssl_run("sitfer", 25, 0, 0.30, 4.0),
            ssl_run("supervised", 25, 0, 0.25, 2.0),
            ssl_run("sitfer", 25, 1, 0.31, 4.0),  # seed 1 was not fine-tuned
            ssl_run("sitfer", 100, 0, 0.35, 4.0),
        ],
    }
    fine = [_ft_run("finetune", "sitfer", 0, 0.34), _ft_run("finetune", "supervised", 0, 0.27)]
    head = head_reference_runs(ssl, fine)
    assert sorted((r["method"], r["seed"], r["labels_per_class"]) for r in head) == [
        ("sitfer", 0, 25),
        ("supervised", 0, 25),
    ]
    by_method = {r["method"]: r for r in head}
    assert by_method["sitfer"]["faces_per_s"] == 100 * 8 * 4 / 4.0  # labeled + 3x unlabeled per step
    assert by_method["supervised"]["faces_per_s"] == 100 * 8 / 2.0  # no unlabeled batches
    table = render_finetune(
        {
            "settings": {
                "train_faces": 10,
                "val_faces": 5,
                "encoder": "e",
                "steps": 100,
                "batch_size": 8,
                "unlabeled_ratio": 3,
                "workers": 2,
                "device": "cuda",
                "machine": "m",
                "torch": "t",
                "methods": ["supervised", "sitfer"],
            },
            "runs": fine + head,
        }
    )
    assert "| 25 | sitfer | head (a) | 30.0 (1 seed) |" in table
    assert "| 25 | sitfer | finetune | 34.0 (1 seed) |" in table
    assert "(a) ran on cpu, laptop; torch 2.x (bench.ssl_benchmark)." in table


def test_labeled_fingerprint_names_the_labeled_faces_and_their_classes():
    faces = SimpleNamespace(paths=[Path(f"/data/{name}.jpg") for name in "abcd"])
    rows = np.array([0, 1, 2, 3])
    base = labeled_fingerprint(faces, rows, np.array([0, -1, 2, -1]))
    assert base == labeled_fingerprint(faces, rows[::-1], np.array([-1, 2, -1, 0]))  # order does not matter
    assert base != labeled_fingerprint(faces, rows, np.array([1, -1, 2, -1]))  # another class
    assert base != labeled_fingerprint(faces, rows, np.array([0, 3, 2, -1]))  # another face labeled


def test_merging_keeps_resumed_runs_once_marks_side_by_side_runs_and_refuses_other_labeled_faces():
    settings = {
        "methods": ["fixmatch"],
        "steps": 100,
        "train_faces": 10,
        "val_faces": 5,
        "encoder": "e",
        "batch_size": 8,
        "unlabeled_ratio": 3,
        "workers": 2,
        "device": "cuda",
        "machine": "m",
        "torch": "t",
    }
    resumed = _ft_run("finetune", "supervised", 0, 0.27)
    part_a = {
        "settings": settings,
        "preface": "Why.",
        "labeled_sets": {"25/0": "abc"},
        "runs": [resumed, _ft_run("finetune", "fixmatch", 0, 0.35, side_by_side=2)],
    }
    part_b = {
        "settings": {**settings, "methods": ["sitfer"]},
        "labeled_sets": {"25/0": "abc"},
        "runs": [
            resumed,
            _ft_run(
                "finetune",
                "sitfer",
                0,
                0.34,
                side_by_side=2,
                profile={
                    "profiled_steps": 20,
                    "wall_ms_per_step": 80.0,
                    "device_kernel_ms_per_step": 12.5,
                    "kernel_launches_per_step": 2400.0,
                },
            ),
        ],
    }
    merged = merge_results([part_a, part_b])
    assert sorted(r["method"] for r in merged["runs"]) == ["fixmatch", "sitfer", "supervised"]
    assert merged["settings"]["methods"] == ["fixmatch", "sitfer"] and merged["preface"] == "Why."
    assert part_a["settings"]["methods"] == ["fixmatch"]  # the parts are left as they were
    table = render_finetune(merged)
    assert "| 25 | sitfer | finetune † |" in table and "| 25 | supervised | finetune |" in table
    assert "†: ran side by side" in table
    assert "N = 25 sitfer: 80.0 ms a step, of which kernels on the device 12.5 ms, 2400 kernel launches." in table
    with pytest.raises(ValueError, match="different labeled faces"):
        merge_results([part_a, {**part_b, "labeled_sets": {"25/0": "xyz"}}])


def test_feature_probe_names_the_encoders_own_features():
    """The probe's row marked as the encoder's features is the pooling the offline encoder uses."""
    from bench.feature_probe import CANDIDATES, CURRENT, FORMER, render
    from core.encoders.offline import FEATURE_BLOCKS, FEATURE_GRID

    assert CANDIDATES[CURRENT] == (FEATURE_BLOCKS - 1, FEATURE_GRID)
    assert CANDIDATES[FORMER] == ("head", 1)
    results = {
        "settings": {
            "train_faces": 10,
            "dev_faces": 5,
            "seed": 0,
            "input_size": 112,
            "machine": "m",
            "feature_seconds": 1.0,
            "c_small": 0.05,
            "c_all": 0.5,
        },
        "rows": [{"labels": 25, "accuracy": {name: i / 100 for i, name in enumerate(CANDIDATES)}}],
    }
    text = render(results)
    current_row = next(line for line in text.splitlines() if line.startswith(f"| {CURRENT}"))
    assert "(the encoder's features) | 1008 | " in current_row
    assert current_row.endswith(f"| {list(CANDIDATES).index(CURRENT):.1f} |")


def test_a_rerendered_section_keeps_its_measured_stamp_even_with_underscores(tmp_path, monkeypatch):
    from bench import report

    monkeypatch.setattr(report, "BENCHMARKS_MD", tmp_path / "benchmarks.md")
    report.write_section("al", "body v1")
    text = report.BENCHMARKS_MD.read_text()
    stamp = "_Measured 2026-11-28 22:33 UTC (random, margin) and 2026-11-29 03:26 UTC (typical_margin)._"
    report.BENCHMARKS_MD.write_text(re.sub(r"_Measured .*\._", stamp, text))
    report.write_section("al", "body v2", rendered_only=True)
    assert "body v2" in report.BENCHMARKS_MD.read_text() and stamp in report.BENCHMARKS_MD.read_text()
    report.write_section("al", "body v3")  # a fresh measurement takes the current time
    assert stamp not in report.BENCHMARKS_MD.read_text()
