"""Importing folders and CSV manifests: labels, splits, the label protocol, duplicates, faces."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.ingest.importer import ImportOptions, choose_kept_labels, import_source
from core.ingest.sources import SourceError
from core.store.models import HiddenTruth, Image, ImportBatch, Label
from core.store.queries import project_stats
from tests.imagegen import face_like, save, write_class_folders


@pytest.fixture
def project(store_project):
    """Every import here runs into a SQLite and a PostgreSQL project (tests/conftest.py)."""
    return store_project


def test_class_folders_with_fer2013_names_map_onto_expressions(project, tmp_path):
    src = write_class_folders(tmp_path / "src", {"angry": 3, "happy": 2, "Surprise": 1, "sad": 2})
    report = import_source(project, src, ImportOptions(split="val"))
    assert report.imported == 8 and report.labeled == 8 and not report.skipped
    with project.session() as s:
        stats = project_stats(s)
    assert stats["by_label"]["anger"] == 3 and stats["by_label"]["happiness"] == 2
    assert stats["by_label"]["surprise"] == 1 and stats["by_label"]["sadness"] == 2
    assert stats["by_split"]["val"]["images"] == 8


def test_flat_folder_is_unlabeled(project, tmp_path):
    for i in range(4):
        save(face_like(i), tmp_path / "flat" / f"{i}.png")
    report = import_source(project, tmp_path / "flat")
    assert report.imported == 4 and report.labeled == 0


def test_unknown_class_folder_is_a_clear_error_listing_known_classes(project, tmp_path):
    src = write_class_folders(tmp_path / "src", {"happy": 1, "smiling": 1, "contempt": 1})
    with pytest.raises(SourceError) as info:
        import_source(project, src)
    message = str(info.value)
    assert "contempt" in message and "smiling" in message
    for known in ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"):
        assert known in message
    with project.session() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 0


def test_user_mapping_and_skip(project, tmp_path):
    src = write_class_folders(tmp_path / "src", {"happy": 1, "smiling": 2, "contempt": 3})
    report = import_source(project, src, ImportOptions(mapping={"smiling": "happiness", "contempt": "skip"}))
    assert report.imported == 3
    with project.session() as s:
        assert project_stats(s)["by_label"]["happiness"] == 3


def test_unlabeled_flag_ignores_folder_names(project, tmp_path):
    src = write_class_folders(tmp_path / "src", {"2021": 2, "holiday": 2})
    report = import_source(project, src, ImportOptions(ignore_folder_names=True))
    assert report.imported == 4 and report.labeled == 0


def test_keep_labels_per_class_hides_the_rest_deterministically(project, tmp_path):
    src = write_class_folders(tmp_path / "src", {"angry": 10, "happy": 8, "disgust": 2})
    report = import_source(project, src, ImportOptions(keep_labels_per_class=3, seed=7))
    assert report.kept_per_class == {"disgust": 2, "happiness": 3, "anger": 3}
    assert report.labeled == 8 and report.hidden == 12
    assert any("disgust" in note for note in report.notes)
    with project.session() as s:
        kept = sorted(s.scalars(select(Image.path).join(Label, Label.image_id == Image.id)))
        hidden = dict(
            s.execute(select(Image.path, HiddenTruth.label).join(HiddenTruth, HiddenTruth.image_id == Image.id)).all()
        )
        overlap = s.scalar(
            select(func.count()).select_from(Label).join(HiddenTruth, HiddenTruth.image_id == Label.image_id)
        )
    assert overlap == 0, "a face is either labeled or has hidden truth, never both"
    assert all(label == "anger" for path, label in hidden.items() if "/angry/" in path)
    # Same files and seed: same choice, regardless of project; other seed: other choice.
    keys = {"anger": [(f"a{i}", 0) for i in range(10)]}
    assert choose_kept_labels(keys, 3, 7) == choose_kept_labels(keys, 3, 7)
    assert choose_kept_labels(keys, 3, 7) != choose_kept_labels(keys, 3, 8)
    assert len(kept) == 8


def test_keep_labels_needs_labels(project, tmp_path):
    save(face_like(1), tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match="labeled source"):
        import_source(project, tmp_path / "flat", ImportOptions(keep_labels_per_class=2))


def test_csv_manifest_with_relative_paths_labels_and_splits(project, tmp_path):
    for i in range(4):
        save(face_like(i), tmp_path / "imgs" / f"{i}.png")
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "path,label,split\nimgs/0.png,happy,\nimgs/1.png,fearful,val\nimgs/2.png,,\nimgs/3.png,neutral,test\n",
        encoding="utf-8",
    )
    report = import_source(project, manifest)
    assert report.imported == 4 and report.labeled == 3
    with project.session() as s:
        stats = project_stats(s)
    assert stats["by_split"]["train"]["images"] == 2 and stats["by_split"]["val"]["labeled"] == 1
    assert stats["by_split"]["test"]["labeled"] == 1 and stats["by_label"]["fear"] == 1


@pytest.mark.parametrize(
    "content, expected",
    [
        ("file_name,emotion\na.png,happy\n", "no path column"),
        ("path,label\na.png,happy,extra\n", ":2: expected 2 fields"),
        ("path,label\na.png,contempt\n", "unknown class name(s): contempt"),
        ('path,label\n"a.png,happy\n', "malformed CSV"),
        ("path,label,split\na.png,happy,holdout\n", "unknown split 'holdout'"),
        ("", "empty"),
    ],
)
def test_malformed_csv_is_a_clear_error_naming_file_and_line(project, tmp_path, content, expected):
    manifest = tmp_path / "bad.csv"
    manifest.write_text(content, encoding="utf-8")
    with pytest.raises(SourceError) as info:
        import_source(project, manifest)
    assert "bad.csv" in str(info.value) and expected in str(info.value)


def test_non_utf8_csv_is_a_clear_error(project, tmp_path):
    manifest = tmp_path / "latin.csv"
    manifest.write_bytes("path,label\ncaf\xe9.png,happy\n".encode("latin-1"))
    with pytest.raises(SourceError, match=r"latin\.csv: not UTF-8"):
        import_source(project, manifest)


def test_missing_source_is_a_clear_error(project, tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        import_source(project, tmp_path / "nowhere")


def test_duplicates_within_and_across_imports(project, tmp_path):
    save(face_like(1), tmp_path / "a" / "one.png")
    (tmp_path / "a" / "copy.png").write_bytes((tmp_path / "a" / "one.png").read_bytes())
    save(face_like(2), tmp_path / "a" / "two.png")
    first = import_source(project, tmp_path / "a")
    assert first.imported == 2
    assert [s.reason.split(" (")[0] for s in first.skipped] == ["duplicate"]
    assert "same content as" in first.skipped[0].reason
    second = import_source(project, tmp_path / "a")
    assert second.imported == 0 and len(second.skipped) == 3
    assert all("already in the project" in s.reason for s in second.skipped if "copy" not in s.path)
    with project.session() as s:
        batches = s.scalars(select(ImportBatch).order_by(ImportBatch.id)).all()
    assert [b.imported for b in batches] == [2, 0] and all(b.finished_at for b in batches)


def test_parallel_and_serial_imports_agree(tmp_path):
    from core.store.project import Project

    src = write_class_folders(tmp_path / "src", {"happy": 130, "sad": 120}, size=24)
    results = []
    for workers in (1, 2):
        with Project.create(tmp_path / f"p{workers}") as proj:
            report = import_source(proj, src, ImportOptions(workers=workers, keep_labels_per_class=5, seed=3))
            with proj.session() as s:
                kept = sorted(s.scalars(select(Image.path).join(Label, Label.image_id == Image.id)))
            results.append((report.imported, report.labeled, kept))
    assert results[0] == results[1]
    assert results[0][0] == 250


def test_progress_callback_and_cancel(project, tmp_path):
    src = write_class_folders(tmp_path / "src", {"happy": 30}, size=16)
    events = []
    report = import_source(
        project, src, ImportOptions(workers=1), progress=events.append, cancelled=lambda: len(events) >= 10
    )
    assert report.cancelled and report.imported == 0
    assert [e.done for e in events] == list(range(1, 11)) and events[0].total == 30
    done = []
    report = import_source(project, src, ImportOptions(workers=1), progress=done.append)
    assert report.imported == 30
    assert done[-1].phase == "writing" and done[-1].done == done[-1].total == 30
