"""The feature-speed and thread-discipline reports' own arithmetic."""

from __future__ import annotations

from bench.feature_speed import render
from bench.thread_discipline import phase_seconds


def test_speedups_are_against_torch_eager_at_the_same_threads():
    rows = [
        {"engine": f"{name}, {t} thread(s)", "images_per_s": rate, "max_abs_diff": 0.0, "float16_changed": 0.0}
        for name, t, rate in (
            ("torch eager (the cache before)", 1, 50.0),
            ("onnxruntime fp32", 1, 150.0),
            ("torch eager (the cache before)", 2, 80.0),
            ("onnxruntime fp32", 2, 240.0),
        )
    ]
    results = {
        "machine": "test box",
        "engines": {"faces": 2, "images": 8, "batch": 256, "rows": rows, "feature_max": 12.0, "load": [1, 1]},
        "cache": {
            "faces": 10,
            "views": 4,
            "load": [1, 1],
            "rows": [{"path": "before", "faces_per_s": 10.0}, {"path": "now", "faces_per_s": 45.0}],
        },
        "full": {
            "faces": 31047,
            "views": 4,
            "seconds": 465.0,
            "engine": "onnxruntime",
            "threads": "2 threads",
            "load": [1, 1],
        },
    }
    text = render(results)
    assert "| onnxruntime fp32, 1 thread(s) | **150** | 3.0x |" in text
    assert "| onnxruntime fp32, 2 thread(s) | **240** | 3.0x |" in text
    assert "| now | **45.0** | 4.5x |" in text
    assert "**465 s** (7.8 min, 67 faces/s)" in text


def test_phases_are_timed_from_their_progress_events():
    events = [
        {"event": "progress", "phase": "features", "time": 10.0},
        {"event": "progress", "phase": "features", "time": 14.5},
        {"event": "metrics", "time": 15.0},
        {"event": "progress", "time": 16.0},  # older workers: no phase on training progress
        {"event": "progress", "phase": "train", "time": 20.0},
    ]
    assert phase_seconds(events) == {"features": 4.5, "training": 4.0}
