"""The prediction-row codec (core/store/prediction_rows.py): what is encoded decodes back, both
by itself and through a project's database and the readers the studio uses (the queue's bulk
loader, a face's evidence, the re-scorer's partial update); and no other module writes the
format's column names by hand."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, update

from core.active.data import load_run_predictions
from core.active.evidence import face_evidence
from core.classes import class_names
from core.store.models import Image, Prediction, Run
from core.store.prediction_rows import (
    LEVELS,
    PROBABILITY_DECIMALS,
    decode_extra,
    decode_probabilities,
    decode_probability_column,
    encode_extra,
    encode_prediction,
    encode_probabilities,
    level_column,
)

ROOT = Path(__file__).resolve().parent.parent
CODEC = ROOT / "core" / "store" / "prediction_rows.py"
NAMES = class_names()
C = len(NAMES)


def _probabilities(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.dirichlet(np.ones(C), size=n)


def test_probabilities_round_trip_within_the_stored_decimals():
    values = _probabilities(np.random.default_rng(0), 1)[0]
    stored = encode_probabilities(values)
    assert stored is not None and len(stored) == C
    assert all(round(v, PROBABILITY_DECIMALS) == v for v in stored)
    for form in (stored, json.dumps(stored)):  # parsed, or as JSON text
        decoded = decode_probabilities(form)
        assert decoded is not None and np.allclose(decoded, values, atol=0.5 * 10**-PROBABILITY_DECIMALS)
    assert encode_probabilities(None) is None and decode_probabilities(None) is None
    assert decode_probabilities("null") is None


def test_a_column_decodes_whole_with_nan_rows_for_absent_levels():
    rows = _probabilities(np.random.default_rng(1), 3)
    texts = [json.dumps(encode_probabilities(rows[0])), None, "null", json.dumps(encode_probabilities(rows[2]))]
    decoded = decode_probability_column(texts, C)
    assert decoded.shape == (4, C)
    assert np.isnan(decoded[1]).all() and np.isnan(decoded[2]).all()
    assert np.allclose(decoded[[0, 3]], rows[[0, 2]], atol=1e-5)
    assert decode_probability_column([], C).shape == (0, C)


def test_extras_store_a_class_mask_as_its_class_names_and_the_rest_as_lists():
    mask = np.zeros(C, dtype=bool)
    mask[[0, 3]] = True
    stored = encode_extra({"positive_set": mask, "score": np.array([0.5, 2.0])}, NAMES)
    assert stored == {"positive_set": [NAMES[0], NAMES[3]], "score": [0.5, 2.0]}
    assert decode_extra(json.dumps(stored)) == stored and decode_extra(stored) == stored
    assert encode_extra({}, NAMES) is None and decode_extra(None) is None and decode_extra({}) is None


def test_a_row_names_its_columns_and_leaves_out_what_an_update_keeps():
    fused = _probabilities(np.random.default_rng(2), 1)[0]
    row = encode_prediction(
        3,
        9,
        fused=fused,
        pseudo_label=int(fused.argmax()),
        confidence=fused.max(),
        passed=True,
        names=NAMES,
        levels={"text": fused},
    )
    assert set(row) == {"run_id", "image_id", "p_text", "p_fused", "pseudo_label", "confidence", "passed_threshold"}
    assert row["pseudo_label"] == NAMES[int(fused.argmax())] and row["passed_threshold"] is True
    assert {level_column(level) for level in LEVELS} <= {c.name for c in Prediction.__table__.columns}
    with pytest.raises(ValueError, match="unknown level"):
        level_column("fused")


@pytest.fixture
def project(store_project):
    """The codec's rows read back on SQLite and on PostgreSQL (JSON columns, their text casts)."""
    return store_project


def test_rows_written_by_the_codec_read_back_through_the_studios_readers(project):
    rng = np.random.default_rng(3)
    faces = 4
    semantic, text, fused = (_probabilities(rng, faces) for _ in range(3))
    mask = rng.random((faces, C)) < 0.3
    with project.session() as session:
        for n in range(faces):
            session.add(Image(path=f"f/{n}.png", content_hash=f"{n:064x}", width=48, height=48, split="train"))
        run = Run(algorithm="sitfer", encoder="tiny", mode="head", config={})
        session.add(run)
        session.flush()
        run_id = run.id
        session.execute(
            insert(Prediction),
            [
                encode_prediction(
                    run_id,
                    i + 1,
                    fused=fused[i],
                    pseudo_label=int(fused[i].argmax()),
                    confidence=fused[i].max(),
                    passed=i % 2 == 0,
                    names=NAMES,
                    levels={"semantic": semantic[i], "text": text[i], "instance": None},
                    extras={"positive_set": mask[i]},
                )
                for i in range(faces)
            ],
        )
    with project.session() as session:
        loaded = load_run_predictions(session, run_id)
        assert loaded.face_ids.tolist() == [1, 2, 3, 4] and set(loaded.levels) == {"semantic", "text"}
        assert np.allclose(loaded.fused, fused, atol=1e-5) and np.allclose(loaded.levels["text"], text, atol=1e-5)
        assert loaded.predicted.tolist() == fused.argmax(1).tolist() and loaded.passed.tolist() == [1, 0, 1, 0]
        evidence = face_evidence(session, run_id, 2)
    assert evidence is not None and evidence.levels["instance"] is None
    assert np.allclose(evidence.levels["semantic"], semantic[1], atol=1e-5)
    assert evidence.extra == ({"positive_set": [NAMES[j] for j in np.flatnonzero(mask[1])]} if mask[1].any() else None)

    # The re-scorer's update names only the text level: the semantic level stays as it was.
    new_text = _probabilities(rng, 1)[0]
    with project.session() as session:
        session.execute(
            update(Prediction),
            [
                encode_prediction(
                    run_id,
                    2,
                    fused=new_text,
                    pseudo_label=int(new_text.argmax()),
                    confidence=new_text.max(),
                    passed=False,
                    names=NAMES,
                    levels={"text": new_text},
                )
            ],
        )
        evidence = face_evidence(session, run_id, 2)
    assert evidence is not None and np.allclose(evidence.levels["text"], new_text, atol=1e-5)
    assert np.allclose(evidence.levels["semantic"], semantic[1], atol=1e-5)


def test_no_module_but_the_codec_spells_the_prediction_columns():
    """A hand-built row (a dict key 'p_fused', 'p_text' ...) is the copy this codec replaced."""
    columns = {"p_fused", *(level_column(level) for level in LEVELS)}
    offenders = []
    for folder in ("core", "app", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == CODEC:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in columns:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    assert not offenders, offenders
