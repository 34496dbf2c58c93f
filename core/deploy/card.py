"""The facts a model card states about a run: what trained it, on which labels, how well it does
on val and test (the same numbers `evaluate` gives), and its limits; and the card as Markdown."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import func, select

from core.classes import class_names
from core.store.models import Correction, Image, Run, RunLabel
from core.store.project import Project
from core.training.evaluation import EvaluationError, evaluate_run

SPLITS_REPORTED = ("val", "test")


def labeled_set(project: Project, run: Run) -> dict:
    """The labeled set the run trained on (frozen at its start in run_labels): faces per class, a
    fingerprint (sha256 of each face's content hash, face index and label, sorted), and how many
    of its labels an annotator gave (the face's last correction before the run set that label)."""
    with project.session() as session:
        rows = session.execute(
            select(Image.id, Image.content_hash, Image.face_index, RunLabel.label)
            .join(RunLabel, RunLabel.image_id == Image.id)
            .where(RunLabel.run_id == run.id)
        ).all()
        last = (
            select(func.max(Correction.id))
            .where(Correction.undone_at.is_(None), Correction.created_at <= run.created_at)
            .group_by(Correction.image_id)
        )
        corrected = {
            image_id: label
            for image_id, label in session.execute(
                select(Correction.image_id, Correction.new_label).where(Correction.id.in_(last))
            )
        }
        unlabeled_train = session.scalar(
            select(func.count(Image.id)).where(
                Image.split == "train", Image.id.not_in(select(RunLabel.image_id).where(RunLabel.run_id == run.id))
            )
        )
    counts = Counter(label for *_rest, label in rows)
    digest = hashlib.sha256()
    for line in sorted(f"{content_hash}:{face_index}:{label}" for _id, content_hash, face_index, label in rows):
        digest.update(line.encode() + b"\n")
    from_annotators = sum(1 for image_id, _hash, _index, label in rows if corrected.get(image_id) == label)
    return {
        "faces": len(rows),
        "per_class": {name: counts.get(name, 0) for name in class_names()},
        "fingerprint": digest.hexdigest(),
        "from_annotators": from_annotators,
        "from_import": len(rows) - from_annotators,
        "unlabeled_train_faces_now": int(unlabeled_train or 0),
    }


def split_metrics(project: Project, run_id: int) -> dict:
    """`evaluate`'s report of the run on each split, or why there is none."""
    metrics: dict[str, dict] = {}
    for split in SPLITS_REPORTED:
        try:
            metrics[split] = evaluate_run(project, run_id, split)
        except EvaluationError as exc:
            metrics[split] = {"unavailable": str(exc)}
    return metrics


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def card_markdown(card: dict) -> str:
    """MODEL_CARD.md: the card's facts for a person, the JSON's numbers unchanged."""
    run, algorithm, encoder = card["run"], card["algorithm"], card["encoder"]
    pre = card["preprocessing"]
    lines = [
        f"# Model card: {algorithm['title']} on the {encoder['spec']} encoder (run {run['id']})",
        "",
        f"Exported {card['created']} by {card['studio']['name']} {card['studio']['version']} as "
        f"{card['format']} (`{card['model_file']}`, sha256 `{card['model_sha256']}`).",
        "",
        "## What it does",
        f"Classifies a face image into one of {len(card['classes'])} expressions, in this order: "
        + ", ".join(f"`{c}`" for c in card["classes"])
        + ".",
        "",
        "Inputs:",
        *(f"- `{i['name']}`: {i['dtype']} {_shape(i['shape'])}. {i['description']}" for i in card["inputs"]),
        "",
        "Outputs:",
        *(f"- `{o['name']}`: {o['dtype']} {_shape(o['shape'])}. {o['description']}" for o in card["outputs"]),
        "",
        "## Preprocessing",
        f"- Faces: {pre['faces']}",
        f"- Size and fit: {pre['fit']}",
        f"- Colour: {pre['color']}",
        f"- Normalisation (inside the graph): {pre['normalisation']['formula']}, mean "
        f"{pre['normalisation']['mean']}, std {pre['normalisation']['std']}",
    ]
    if pre.get("geometry"):
        geometry = pre["geometry"]
        lines.append(f"- Geometry: {geometry['description']}")
    lines += [
        "",
        "## How it was trained",
        f"- Algorithm: {algorithm['name']} ({algorithm['title']}), {card['mode']} mode, {run['step']:,} steps; "
        f"levels {', '.join(card['levels'])}; fusion weights {card['fusion_weights']}.",
        f"- Encoder: {encoder['description']}",
        *(f"- Weights `{w['name']}`: sha256 `{w['sha256']}`" for w in encoder["weights"]),
        f"- Text level: class descriptions sha256 `{encoder['descriptions_sha256']}` "
        f"(their embeddings are constants in the graph).",
    ]
    labeled = card["labeled_set"]
    lines += [
        f"- Labeled set: {labeled['faces']:,} faces ("
        + ", ".join(f"{name} {count:,}" for name, count in labeled["per_class"].items())
        + f"); {labeled['from_annotators']:,} labels from annotators, {labeled['from_import']:,} imported; "
        f"fingerprint `{labeled['fingerprint']}`.",
    ]
    if card.get("instance_bank"):
        bank = card["instance_bank"]
        lines.append(
            f"- Instance level: a bank of {bank['entries']:,} training faces' embeddings "
            f"(top {bank['top_k']} per class, tau {bank['tau']}), constants in the graph."
        )
    lines += ["- Class thresholds (the run's, for pseudo-labels): " + _class_numbers(card["thresholds"]), ""]
    lines += ["## Metrics (the same numbers as `python main.py evaluate`)", ""]
    lines += _metrics_table(card["metrics"], card["classes"])
    check = card["check"]
    lines += [
        "",
        "## Checked",
        f"The exported file was run on {check['faces']} of the project's faces and compared with the studio's "
        f"own prediction of them: largest difference of any output probability {check['max_abs_difference']:.2g} "
        f"(allowed {check['tolerance']:g}).",
        "",
        "## Known limits",
        *(f"- {limit}" for limit in card["limits"]),
        "",
    ]
    return "\n".join(lines)


def _shape(shape: list) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _class_numbers(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in values.items())


def _metrics_table(metrics: dict, classes: list[str]) -> list[str]:
    lines = []
    for split, report in metrics.items():
        if "unavailable" in report:
            lines += [f"**{split}**: none ({report['unavailable']}).", ""]
            continue
        fused, classifier = report["fused"], report["classifier"]
        lines += [
            f"**{split}** ({fused['n']:,} labeled faces)",
            "",
            "| output | accuracy | balanced accuracy | " + " | ".join(f"recall {c}" for c in classes) + " |",
            "|---|---|---|" + "---|" * len(classes),
        ]
        for name, part in (("fused", fused), ("semantic (classifier)", classifier)):
            recalls = [part["per_class"].get(c) for c in classes]
            lines.append(
                f"| {name} | {_pct(part['accuracy'])} | {_pct(part['balanced_accuracy'])} | "
                + " | ".join(_pct(r) for r in recalls)
                + " |"
            )
        lines += ["", f"Confusion matrix of the fused output ({split}; rows true, columns predicted):", ""]
        lines.append("| true \\ predicted | " + " | ".join(classes) + " |")
        lines.append("|---|" + "---|" * len(classes))
        for name, row in zip(fused["classes"], fused["confusion"]):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
        lines.append("")
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
