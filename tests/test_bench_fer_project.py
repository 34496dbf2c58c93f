"""The benchmark project's studio copy: the same faces, N train faces per class labeled from the
hidden truth through the corrections log, the original left as it was."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from bench.fer_project import make_studio_copy
from core.store.models import Correction, HiddenTruth, Image, Label
from core.store.project import Project
from tests.studio_runs import make_demo


def _train_labels(root) -> tuple[Counter, int, int]:
    with Project.open(root) as project, project.session() as session:
        labels = (
            session.execute(select(Label.label).join(Image, Image.id == Label.image_id).where(Image.split == "train"))
            .scalars()
            .all()
        )
        hidden = session.scalar(select(func.count()).select_from(HiddenTruth))
        annotated = session.scalar(
            select(func.count()).select_from(Correction).where(Correction.annotator == "benchmark")
        )
    return Counter(labels), hidden, annotated


def test_studio_copy_labels_n_per_class_from_the_hidden_truth_and_leaves_the_original(tmp_path):
    source = make_demo(tmp_path / "bench")
    before, hidden, _ = _train_labels(source)
    labeled = make_studio_copy(source, tmp_path / "studio", per_class=4, seed=0)
    assert set(labeled.values()) == {4}
    after, hidden_after, annotated = _train_labels(tmp_path / "studio")
    assert after == before + Counter({name: 4 for name in labeled})  # on top of the demo's own labels
    assert annotated == 4 * len(labeled) and hidden_after == hidden  # via the corrections log; truth kept
    assert _train_labels(source)[0] == before  # the benchmark project itself is untouched
    again = make_studio_copy(source, tmp_path / "again", per_class=4, seed=0)
    assert again == labeled
    with pytest.raises(SystemExit, match="exists"):
        make_studio_copy(source, tmp_path / "studio", per_class=4, seed=0)
