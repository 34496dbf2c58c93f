"""Exporting the labeled set (with provenance) and the corrections log."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image as PILImage
from sqlalchemy import select

from core.classes import class_names
from core.ingest.imageio import ImageProblem, decode_image, load_face, read_bytes
from core.store.models import SPLITS, STATUS_ACTIVE, Correction, Image, Label
from core.store.models import Vote as VoteRow
from core.store.project import Project
from core.team.votes import load_votes

EXPORT_FORMATS = ("csv", "folders")
LABEL_COLUMNS = [
    "image_id",
    "path",
    "exported_file",
    "split",
    "label",
    "label_source",
    "annotator",
    "labeled_at",
    "content_hash",
    "face_index",
    "face_x",
    "face_y",
    "face_w",
    "face_h",
    "votes",  # each annotator's vote, "ana:fear;ben:surprise" ("-": no label; "!": adjudication)
]
# old_source/old_annotator/old_labeled_at: the provenance of the label a correction replaced
# (e.g. an imported ground-truth label), so an export keeps what undo would restore.
CORRECTION_COLUMNS = [
    "id",
    "image_id",
    "path",
    "annotator",
    "created_at",
    "old_label",
    "new_label",
    "suggestion",
    "run_id",
    "batch_id",
    "undone_at",
    "old_source",
    "old_annotator",
    "old_labeled_at",
    "adjudicated",
]
# Each annotator's current vote of each face (core/team/votes.py): what agreement is measured on.
VOTE_COLUMNS = ["image_id", "path", "annotator", "label", "adjudicated", "voted_at"]


class ExportError(RuntimeError):
    pass


class _TargetOutside(ValueError):
    """A face file whose path would resolve outside the output folder; that face is skipped."""


@dataclass
class ExportReport:
    out_dir: str
    labeled: int = 0
    files_written: int = 0
    corrections: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"Exported {self.labeled} labeled face(s) and {self.corrections} correction(s) to "
            f"{self.out_dir}" + (f"; {self.files_written} image file(s) written" if self.files_written else "") + "."
        )
        if self.skipped:
            text += f"\nSkipped {len(self.skipped)} face(s): " + "; ".join(f"{p}: {r}" for p, r in self.skipped[:10])
        return text


def _safe_name(name: str) -> str:
    # Keep unicode letters; drop only what file systems reject.
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name)[:120] or "face"


def _row_problem(image: Image, label: str) -> str | None:
    """Why a face cannot be exported: its label or split is none the project knows.

    Both become folder names, so a tampered database ('../../x') must not reach the disk."""
    if label not in class_names():
        return f"unknown label {label!r} (not one of {', '.join(class_names())})"
    if image.split not in SPLITS:
        return f"unknown split {image.split!r} (not one of {', '.join(SPLITS)})"
    return None


def _inside(out: Path, *parts: str) -> Path:
    """out/parts..., refused unless it resolves inside `out` (a symbolic link there could lead out)."""
    target = out.joinpath(*parts)
    resolved, root = target.resolve(), out.resolve()
    if resolved != root and root not in resolved.parents:
        raise _TargetOutside(f"target {target} resolves to {resolved}, outside the output folder {out}")
    return target


def _extension(source: Path, fmt: str) -> str:
    """The source's own extension when it names the decoded format, else the format's usual one."""
    known = [ext for ext, name in PILImage.registered_extensions().items() if name == fmt]
    suffix = source.suffix.lower()
    if suffix in known:
        return suffix
    return {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif"}.get(fmt, known[0] if known else ".img")


def export_project(
    project: Project, out_dir: str | Path, fmt: str = "csv", *, split: str | None = None, overwrite: bool = False
) -> ExportReport:
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} is not empty; choose an empty folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    report = ExportReport(str(out))

    with project.session() as session:
        query = (
            select(Image, Label)
            .join(Label, Label.image_id == Image.id)
            .where(Image.status == STATUS_ACTIVE)
            .order_by(Image.id)
        )
        if split:
            query = query.where(Image.split == split)
        labeled = session.execute(query).all()
        corrections = session.execute(
            select(Correction, Image.path).join(Image, Image.id == Correction.image_id).order_by(Correction.id)
        ).all()
        paths = dict(session.execute(select(Image.id, Image.path).where(Image.id.in_(select(VoteRow.image_id)))).all())
        votes = load_votes(session)
    votes_of: dict[int, list[str]] = {}
    for vote in votes:
        mark = "!" if vote.adjudicated else ""
        votes_of.setdefault(vote.face_id, []).append(f"{vote.annotator}:{mark}{vote.label or '-'}")

    label_rows = []
    for image, label in labeled:
        exported: str | None = ""
        problem = _row_problem(image, label.label)
        if problem:
            report.skipped.append((image.path, problem))
            continue
        if fmt == "folders":
            exported = _write_face_file(project, image, label.label, out, report)
            if exported is None:
                continue
        label_rows.append(
            [
                image.id,
                image.path,
                exported,
                image.split,
                label.label,
                label.source,
                label.annotator or "",
                label.updated_at.isoformat(),
                image.content_hash,
                image.face_index,
                image.face_x,
                image.face_y,
                image.face_w,
                image.face_h,
                ";".join(votes_of.get(image.id, [])),
            ]
        )
    report.labeled = len(label_rows)
    _write_csv(out / "labels.csv", LABEL_COLUMNS, label_rows)
    _write_csv(
        out / "corrections.csv",
        CORRECTION_COLUMNS,
        [
            [
                c.id,
                c.image_id,
                path,
                c.annotator,
                c.created_at.isoformat(),
                c.old_label or "",
                c.new_label or "",
                c.suggestion or "",
                c.run_id or "",
                c.batch_id or "",
                c.undone_at.isoformat() if c.undone_at else "",
                c.old_source or "",
                c.old_annotator or "",
                c.old_updated_at.isoformat() if c.old_updated_at else "",
                int(bool(c.adjudicated)),
            ]
            for c, path in corrections
        ],
    )
    _write_csv(
        out / "votes.csv",
        VOTE_COLUMNS,
        [
            [
                v.face_id,
                paths.get(v.face_id, ""),
                v.annotator,
                v.label or "",
                int(v.adjudicated),
                v.created_at.isoformat(),
            ]
            for v in votes
        ],
    )
    report.corrections = len(corrections)
    return report


def _write_face_file(project: Project, image: Image, label: str, out: Path, report: ExportReport) -> str | None:
    source = project.resolve_path(image.path)
    stem = _safe_name(Path(image.path).stem)
    try:
        if image.face_box is None:
            # A crop already: copy the original bytes, so nothing is re-encoded. Only a regular
            # file that decodes as an image is copied (never /etc/passwd named in a tampered
            # database), and the bytes written are the ones checked.
            data = read_bytes(source)
            _decoded, source_format, _mode = decode_image(data)
            target = _inside(out, image.split, label, f"{image.id}_{stem}{_extension(source, source_format)}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        else:
            crop = project.resolve_path(image.crop_path) if image.crop_path else None
            face = load_face(source, crop, image.face_box, image.face_angle)
            target = _inside(out, image.split, label, f"{image.id}_{stem}_face{image.face_index}.png")
            target.parent.mkdir(parents=True, exist_ok=True)
            face.save(target, format="PNG")
    except (ImageProblem, _TargetOutside, OSError) as exc:
        report.skipped.append((image.path, str(exc)))
        return None
    report.files_written += 1
    return target.relative_to(out).as_posix()


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    tmp.replace(path)
