"""`export-model`: a finished run as one self-contained file (ONNX or TorchScript) with its model
card (model_card.json, MODEL_CARD.md).

The graph goes from uint8 RGB pixels to the fused and per-level class probabilities: the image
tower, the head (the EMA weights that wrote the run's predictions), the text level with the class
descriptions' embeddings as constants, and the instance level with the memory bank's entries as
constants (`core.deploy.model.ModelGraph`). What cannot be in it is said in the card: the face
detector and the eye-line alignment (a consumer cuts faces first), and for a run with face geometry
the face mesh (MediaPipe's TFLite model), whose vector is a second input.

Before anything is kept, the exported file is run (ONNX Runtime, or the TorchScript loader) on
the project's own val faces and must match the studio's prediction of them within CHECK_TOLERANCE.
Files are written beside OUT_DIR's final names and moved into place only then.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from core.about import about
from core.deploy.card import card_markdown, labeled_set, now_iso, split_metrics
from core.deploy.model import FacePredictions, ModelError, TrainedModel, load_trained_model
from core.encoders.base import file_sha256
from core.ssl.spec import algorithm_spec
from core.store.project import Project

FORMATS = ("onnx", "torchscript")
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
CARD_JSON, CARD_MD = "model_card.json", "MODEL_CARD.md"
CHECK_TOLERANCE = 1e-4
CHECK_FACES = 16
OPSET = 17

Progress = Callable[[str], None]  # what the export is doing now, in words


class ExportError(ValueError):
    """An export that cannot be made or did not check out; nothing was written under its names."""


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    model_path: Path
    card_path: Path
    card_md_path: Path
    card: dict


def export_model(
    project: Project,
    out_dir: str | os.PathLike,
    run_id: int | None = None,
    fmt: str = "onnx",
    force: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    say = progress or (lambda _message: None)
    target = Path(out_dir).expanduser().resolve()
    names = [MODEL_FILES[fmt], CARD_JSON, CARD_MD]
    present = [n for n in [*MODEL_FILES.values(), CARD_JSON, CARD_MD] if (target / n).exists()]
    if present and not force:
        raise ExportError(
            f"{target} already holds an exported model ({', '.join(present)}); give --force to replace it"
        )
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} is a file, not a folder")
    say("loading the run")
    try:
        model = load_trained_model(project, run_id)
    except ModelError as exc:
        raise ExportError(str(exc)) from None
    faces = check_faces(project)
    say(f"computing the reference predictions of {len(faces)} faces")
    geometry = model.geometry(faces)
    reference = model.predict_faces(faces, geometry)
    pixels = model.pixels(faces)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{target}: cannot create the folder ({exc.strerror or exc})") from None
    partial = {name: target / f".{name}.{os.getpid()}.partial" for name in names}
    try:
        say(f"exporting the graph ({fmt})")
        graph = model.graph()
        run_file = _export_onnx if fmt == "onnx" else _export_torchscript
        outputs = run_file(graph, partial[MODEL_FILES[fmt]], pixels, geometry)
        difference = _largest_difference(graph.output_names, outputs, reference)
        if not difference <= CHECK_TOLERANCE:
            raise ExportError(
                f"the exported {fmt} model differs from the studio's predictions by {difference:.2g} "
                f"(more than {CHECK_TOLERANCE:g}) on {len(faces)} faces; nothing was kept"
            )
        say("writing the model card")
        card = model_card(project, model, graph.output_names, fmt, partial[MODEL_FILES[fmt]], len(faces), difference)
        card["model_file"] = MODEL_FILES[fmt]
        if fmt == "onnx":
            _stamp_onnx(partial[MODEL_FILES[fmt]], card)
            card["model_sha256"] = file_sha256(partial[MODEL_FILES[fmt]])
        partial[CARD_JSON].write_text(json.dumps(card, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        partial[CARD_MD].write_text(card_markdown(card), encoding="utf-8")
        for name, path in partial.items():
            os.replace(path, target / name)
    except OSError as exc:
        raise ExportError(f"{target}: cannot write the model ({exc.strerror or exc})") from None
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
    return ExportResult(target, target / MODEL_FILES[fmt], target / CARD_JSON, target / CARD_MD, card)


def check_faces(project: Project, limit: int = CHECK_FACES) -> list[PILImage.Image]:
    """Faces the export is checked on: the project's val faces first, then any (a few)."""
    from core.ingest.imageio import ImageProblem, load_face
    from core.training.data import load_face_table

    with project.session() as session:
        faces = load_face_table(project, session)
    order = np.concatenate([np.flatnonzero(faces.splits == "val"), np.flatnonzero(faces.splits != "val")])
    images = []
    for row in order:
        try:
            images.append(load_face(faces.paths[row], faces.crop_paths[row], faces.boxes[row], faces.angles[row]))
        except ImageProblem:
            continue
        if len(images) >= limit:
            break
    if not images:
        raise ExportError("the project has no readable face to check the exported model on")
    return images


def _inputs(pixels: np.ndarray, geometry: np.ndarray | None) -> tuple[torch.Tensor, ...]:
    images = torch.from_numpy(pixels)
    return (images,) if geometry is None else (images, torch.from_numpy(geometry))


def _export_onnx(graph, path: Path, pixels: np.ndarray, geometry: np.ndarray | None) -> list[np.ndarray]:
    import onnxruntime as ort

    inputs = _inputs(pixels, geometry)
    input_names = ["images", "geometry"][: len(inputs)]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the towers' Python-int padding
        torch.onnx.export(
            graph,
            inputs,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=graph.output_names,
            dynamic_axes={name: {0: "batch"} for name in [*input_names, *graph.output_names]},
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: t.numpy() for name, t in zip(input_names, inputs)})


def _export_torchscript(graph, path: Path, pixels: np.ndarray, geometry: np.ndarray | None) -> list[np.ndarray]:
    inputs = _inputs(pixels, geometry)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, inputs, check_trace=False)
        traced.save(str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
        return [t.numpy() for t in loaded(*inputs)]


def _largest_difference(names: list[str], outputs: list[np.ndarray], reference: FacePredictions) -> float:
    expected = {
        "fused": reference.fused,
        "semantic": reference.semantic,
        "text": reference.text,
        "instance": reference.instance,
        "embedding": reference.embedding,
    }
    largest = 0.0
    for name, got in zip(names, outputs):
        want = expected[name]
        if want is None or got.shape != want.shape:
            return float("inf")
        largest = max(largest, float(np.abs(got.astype(np.float64) - want).max()))
    return largest


def _stamp_onnx(path: Path, card: dict) -> None:
    """The class names, preprocessing and run in the ONNX file's own metadata too."""
    import onnx

    proto = onnx.load(str(path))
    proto.producer_name = card["studio"]["name"]
    proto.doc_string = f"run {card['run']['id']}: {card['algorithm']['title']} on {card['encoder']['spec']}"
    for key, value in (
        ("classes", json.dumps(card["classes"])),
        ("preprocessing", json.dumps(card["preprocessing"])),
        ("run", str(card["run"]["id"])),
        ("model_card", CARD_JSON),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def model_card(
    project: Project,
    model: TrainedModel,
    outputs: list[str],
    fmt: str,
    model_path: Path,
    checked: int,
    difference: float,
) -> dict:
    from core.encoders.text import descriptions_digest

    run, settings, encoder = model.run, model.settings, model.encoder
    spec = algorithm_spec(settings.algorithm)
    method = settings.method
    classes = list(model.classes)
    studio = about()
    bank = model.algorithm.bank
    card: dict = {
        "format": fmt,
        "model_file": model_path.name,
        "model_sha256": file_sha256(model_path),
        "created": now_iso(),
        "studio": {"name": studio.name, "version": studio.version},
        "run": {
            "id": model.run_id,
            "kind": run.kind,
            "parent": run.parent_run_id,
            "created_at": run.created_at.isoformat() if run.created_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "device": run.device,
            "step": model.step,
        },
        "mode": settings.mode,
        "algorithm": {"name": spec.name, "title": spec.title, "settings": settings.to_dict()},
        "encoder": {
            "spec": settings.encoder,
            "description": encoder.describe(),
            "input_size": model.input_size,
            "weights": encoder_weights(encoder),
            "descriptions_sha256": descriptions_digest(model.descriptions),
            "class_text_sha256": _tensor_sha256(model.class_text),
        },
        "classes": classes,
        "inputs": _input_specs(model),
        "outputs": _output_specs(outputs, classes),
        "preprocessing": preprocessing(model),
        "levels": list(model.levels),
        "fusion_weights": dict(zip(("semantic", "text", "instance"), (float(w) for w in method.weights))),
        "thresholds": {name: round(float(t), 6) for name, t in zip(classes, model.thresholds)},
        "instance_bank": None,
        "labeled_set": labeled_set(project, run),
        "metrics": split_metrics(project, model.run_id),
        "check": {
            "faces": checked,
            "max_abs_difference": difference,
            "tolerance": CHECK_TOLERANCE,
            "against": "the studio's own prediction of the same faces (core.deploy.model.TrainedModel)",
        },
    }
    if bank is not None and "instance" in model.levels:
        sizes = np.bincount(bank.labels[bank.labels >= 0].cpu().numpy(), minlength=len(classes))
        card["instance_bank"] = {
            "entries": int(sizes.sum()),
            "per_class": {name: int(n) for name, n in zip(classes, sizes)},
            "top_k": bank.top_k,
            "tau": method.instance_tau,
        }
    card["limits"] = known_limits(model, card)
    return card


def encoder_weights(encoder) -> list[dict]:
    """The image tower's weights file(s) with their sha256, where the encoder knows them."""
    if encoder.spec == "offline":
        from core.encoders.offline import WEIGHTS_NAME, WEIGHTS_SHA256

        return [{"name": WEIGHTS_NAME, "sha256": WEIGHTS_SHA256, "verified": "sha256 checked when loaded"}]
    weights = getattr(encoder, "_weights", None)
    if isinstance(weights, Path) and weights.is_file():
        return [{"name": weights.name, "sha256": file_sha256(weights), "verified": "hashed at export"}]
    return [{"name": encoder.spec, "sha256": None, "verified": "no weights file to hash (built in code or downloaded)"}]


def preprocessing(model: TrainedModel) -> dict:
    encoder, size = model.encoder, model.input_size
    geometry = None
    if model.uses_geometry:
        from core.training.geometry import GEOMETRY_DIM, GEOMETRY_GAIN, LAYOUT, NORMALISATION

        geometry = {
            "input": "geometry",
            "dim": GEOMETRY_DIM,
            "description": (
                "MediaPipe's 468-point face mesh of the cut face (core/training/geometry.py: a crop under 192 px "
                "enlarged to 192 px, a 25% border of repeated edge pixels, the short-range detector, the mesh); "
                f"the points turned so the eye line is level, centred and scaled ({NORMALISATION}), the "
                f"{len(LAYOUT.points)} contour points' x and y minus the shipped reference face, times "
                f"{GEOMETRY_GAIN:g}, then a last element 0; a face the mesh cannot read is all zeros with the "
                "last element 1 ('no mesh')"
            ),
            "no_mesh_vector": f"zeros({GEOMETRY_DIM - 1}) then 1",
        }
    return {
        "input_size": size,
        "layout": "NHWC",
        "dtype": "uint8",
        "color": "RGB, 8 bits per channel; grey images repeated into all three channels",
        "fit": (
            f"a face whose sides differ by at most 2% is resized to {size}x{size} (bicubic, Pillow); any other shape "
            f"has its shorter side resized to {size} and is cut to the centre square"
        ),
        "faces": (
            "one face per input, cut as the studio's import cuts it: MediaPipe's face detector, the box widened by "
            "the import margin and made square, turned so the eyes are level; an image of at most 256 px a side "
            "is taken whole as a face (import's --faces auto)"
        ),
        "normalisation": {
            "formula": "(pixel / 255 - mean) / std, per channel",
            "mean": [round(v, 6) for v in encoder.mean],
            "std": [round(v, 6) for v in encoder.std],
            "in_graph": True,
        },
        "geometry": geometry,
    }


def _input_specs(model: TrainedModel) -> list[dict]:
    size = model.input_size
    specs = [
        {
            "name": "images",
            "dtype": "uint8",
            "shape": ["batch", size, size, 3],
            "description": "RGB faces fitted to the input size (see preprocessing); normalised inside the graph.",
        }
    ]
    if model.uses_geometry:
        specs.append(
            {
                "name": "geometry",
                "dtype": "float32",
                "shape": ["batch", model.geometry_dim],
                "description": "Each face's face-mesh geometry vector (see preprocessing.geometry).",
            }
        )
    return specs


OUTPUT_WORDS = {
    "fused": "The levels' probabilities fused with the run's weights: the model's prediction",
    "semantic": "The classifier's softmax",
    "text": "Softmax of the projection's cosine similarity to the class descriptions' embeddings",
    "instance": "Softmax of the mean top-k cosine similarity to each class's training faces in the bank",
    "embedding": "The head's L2-normalised embedding (the instance level's feature; the studio's map)",
}


def _output_specs(outputs: list[str], classes: list[str]) -> list[dict]:
    return [
        {
            "name": name,
            "dtype": "float32",
            "shape": ["batch", "embedding_dim" if name == "embedding" else len(classes)],
            "description": OUTPUT_WORDS[name] + ("." if name == "embedding" else ", in class order."),
        }
        for name in outputs
    ]


def known_limits(model: TrainedModel, card: dict) -> list[str]:
    labeled = card["labeled_set"]
    limits = [
        f"Trained on {labeled['faces']:,} labeled faces of one project"
        + (
            f" (and {labeled['unlabeled_train_faces_now']:,} unlabeled train faces)"
            if model.algorithm.uses_unlabeled
            else ""
        )
        + "; it knows the faces, lighting and poses of that set only, and its metrics are on that project's "
        "val and test faces.",
        "The face detector and the eye-line alignment are not in the graph: give it one face per input, cut as "
        "'preprocessing.faces' says. A whole photo is not a face.",
        "The probabilities are not calibrated; the thresholds are the run's pseudo-label thresholds, not decision "
        "thresholds chosen for any use.",
        "Seven basic expressions only, each face exactly one of them: mixed or subtle expressions get one class.",
    ]
    if model.uses_geometry:
        limits.append(
            "The face mesh (MediaPipe's TFLite model) cannot be expressed in this graph: the 'geometry' input must be "
            "computed as 'preprocessing.geometry' says. The 'no mesh' vector is a valid input (the head saw it on "
            "faces the mesh could not read), but a model trained with geometry needs it: on FER2013 val one such "
            "model scored 61.2% with the mesh and 42.9% given the no-mesh vector for every face (docs/benchmarks.md, "
            "'Predicting new faces')."
        )
    if "instance" in model.levels:
        limits.append(
            "The instance level's bank holds training faces' embeddings: the studio leaves a train face's own entry "
            "out of its vote, this graph cannot know a face is one of them, so on the training faces themselves it "
            "is optimistic."
        )
    if model.algorithm.leaf:
        limits.append("LEAF's positive sets (the studio's per-face extras) are not outputs; the fused output is.")
    if model.mode == "finetune":
        limits.append("Fine-tune mode: the tuned image tower is in the graph; face geometry is not used.")
    return limits


def _tensor_sha256(tensor: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(tensor.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()
