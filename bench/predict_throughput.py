"""Predicting new faces: the studio's path against the exported ONNX model, on FER2013 val.

On a project with a finished head-mode run (the FER2013 one: all train labels, sitfer, the offline
encoder, face geometry), the project's val faces are predicted two ways, on the same faces and
with the same thread plan, in one process:
1. the studio's path, as `python main.py predict PROJECT VAL.csv --faces none` runs it:
   `core.deploy.predict.predict_sources` on a CSV manifest of the val files (decoding, the face
   as it is, `TrainedModel.predict_faces`: pixels -> the feature engine -> geometry -> head and
   levels), and its parts on the decoded faces;
2. the run exported with `core.deploy.export.export_model(..., fmt="onnx")`, run on ONNX Runtime
   with the inputs its model card names: `images` uint8 (N, S, S, 3) RGB fitted as the card's
   `preprocessing.fit` says (done here from the card's words, and compared with the studio's own
   pixels), and `geometry` (N, G) from `TrainedModel.geometry(faces)` where the card lists it;
   timed with the geometry computed and as the graph alone.
Each timing: the total over all val faces, median of --repeats after one warm-up pass (a few
batches). Also: how far the two paths' fused probabilities differ, how often their argmax agrees,
and each one's val accuracy against the labels beside the run's stored val metric.

Usage: python -m bench.predict_throughput [--project /tmp/fer-predict] [--run N] [--repeats 3]
       [--threads 1] [--note TEXT] [--no-write] [--json-out F | --render F]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.report import REPO, add_report_arguments, machine_summary, publish, saved_or_run

SECTION = "predict-throughput"
DEFAULT_PROJECT = Path(os.environ.get("FER_PREDICT_PROJECT", "/tmp/fer-predict"))
BATCH = 32  # the ONNX path's batch: the studio's FACE_BATCH
WARMUP_FACES = 64
JSON_RESULTS = REPO / "docs" / "results" / "predict_throughput.json"


def busy_processes(own: int, limit: int = 6) -> list[str]:
    """The processes keeping a core busy right now (not this one): CPU % and a short command."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid=,pcpu=,args=", "--sort=-pcpu"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.splitlines():
        pid, pcpu, *args = line.split(None, 2)
        if int(pid) == own or float(pcpu) < 10 or not args:
            continue
        words = args[0].split()
        program = Path(words[0]).name
        found.append(f"{float(pcpu):.0f}% {program} {' '.join(words[1:4])}"[:100])
        if len(found) >= limit:
            break
    return found


def machine_state() -> dict:
    return {"load_1_5_15": [round(v, 2) for v in os.getloadavg()], "busy": busy_processes(os.getpid())}


def fit_face(image, size: int):
    """A face fitted to size x size RGB as the model card's `preprocessing.fit` says, written from
    its words (not the studio's code): sides within 2% resized whole (bicubic), any other shape's
    shorter side resized to `size` and the centre square cut."""
    from PIL import Image as PILImage

    rgb = image.convert("RGB")
    w, h = rgb.size
    if abs(w - h) <= 0.02 * max(w, h):
        return rgb.resize((size, size), PILImage.Resampling.BICUBIC)
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = rgb.resize((nw, nh), PILImage.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return rgb.crop((left, top, left + size, top + size))


def card_pixels(faces, size: int):
    import numpy as np

    return np.stack([np.asarray(fit_face(face, size), dtype=np.uint8) for face in faces])


def brief_metrics(metrics: dict | None) -> dict | None:
    """The card's split metrics without per-class tables: accuracy and balanced accuracy per level."""
    if not isinstance(metrics, dict):
        return metrics
    return {
        key: {k: value[k] for k in ("n", "accuracy", "balanced_accuracy") if k in value}
        if isinstance(value, dict)
        else value
        for key, value in metrics.items()
        if key not in ("classes",)
    }


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    """Median seconds of `repeats` calls of fn, every call's seconds, and the last call's result."""
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), seconds, result


def run(args, save) -> dict:
    os.environ["FER_STUDIO_THREADS"] = str(args.threads)
    from core.threads import configure_threads

    plan = configure_threads("worker")  # before torch and ONNX Runtime start their pools
    import numpy as np
    import onnxruntime as ort
    import torch

    from core.classes import class_names
    from core.deploy.export import export_model
    from core.deploy.model import load_trained_model
    from core.deploy.predict import FaceOptions, enumerate_inputs, predict_sources, read_item
    from core.ingest.faces import DETECTOR_LANDMARKS
    from core.store.project import Project
    from core.training.data import load_face_table

    results: dict = {
        "machine": machine_summary(),
        "note": args.note,
        "threads": plan.describe(),
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "project": str(args.project),
        "before": machine_state(),
    }
    classes = class_names()
    options = FaceOptions(faces="none")
    with tempfile.TemporaryDirectory(prefix="predict-throughput-") as tmp:
        project = Project.open(args.project, read_only=True)
        try:
            with project.session() as session:
                table = load_face_table(project, session)
            val = table.where("val", labeled=True)
            manifest = Path(tmp) / "val.csv"
            with manifest.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["path", "label"])
                for row in val:
                    writer.writerow([str(table.paths[row]), classes[int(table.labels[row])]])
            items = enumerate_inputs([manifest])
            labels = np.array([classes.index(item.label) if item.label else -1 for item in items])
            started = time.perf_counter()
            model = load_trained_model(project, args.run)
            results["load_model_s"] = time.perf_counter() - started
            results["run"] = {
                "id": model.run_id,
                "algorithm": model.settings.algorithm,
                "mode": model.mode,
                "encoder": model.encoder.describe(),
                "levels": list(model.levels),
                "geometry": model.uses_geometry,
                "input_size": model.input_size,
                "step": model.step,
            }
            results["faces"] = len(items)
            print(f"run {model.run_id}: {len(items):,} val faces; {plan.describe()}", flush=True)

            started = time.perf_counter()
            exported = export_model(project, Path(tmp) / "export", model.run_id, fmt="onnx")
            results["export_s"] = time.perf_counter() - started
        finally:
            project.close()
        card = exported.card
        results["model_mb"] = exported.model_path.stat().st_size / 2**20
        results["card"] = {
            "inputs": [(spec["name"], spec["dtype"], spec["shape"]) for spec in card["inputs"]],
            "outputs": [spec["name"] for spec in card["outputs"]],
            "input_size": card["preprocessing"]["input_size"],
            "fit": card["preprocessing"]["fit"],
            "check": card["check"],
            "labeled_faces": card["labeled_set"].get("faces"),
            "unlabeled_train_faces": card["labeled_set"].get("unlabeled_train_faces_now"),
            "val_metrics": brief_metrics(card["metrics"].get("val")),
        }
        size = int(card["preprocessing"]["input_size"])
        input_names = [spec["name"] for spec in card["inputs"]]
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = plan.threads
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session_options.log_severity_level = 3
        onnx = ort.InferenceSession(str(exported.model_path), session_options, providers=["CPUExecutionProvider"])
        output_names = [o.name for o in onnx.get_outputs()]

        def decode(chosen):
            faces = []
            for item in chosen:
                for _row, face in read_item(item, options, DETECTOR_LANDMARKS):
                    assert face is not None, f"{item.path}: unreadable val face"
                    faces.append(face)
            return faces

        def studio_end_to_end(chosen=items):
            return predict_sources(model, [], options, items=chosen)

        def onnx_graph(pixels, geometry):
            outs = []
            for start in range(0, len(pixels), BATCH):
                feeds = {"images": pixels[start : start + BATCH]}
                if "geometry" in input_names:
                    feeds["geometry"] = geometry[start : start + BATCH]
                outs.append(dict(zip(output_names, onnx.run(None, feeds))))
            return {name: np.concatenate([o[name] for o in outs]) for name in output_names}

        def onnx_from_faces(faces):
            pixels = card_pixels(faces, size)
            geometry = model.geometry(faces) if "geometry" in input_names else None
            return onnx_graph(pixels, geometry)

        # Warm-up: a few batches through every path (engine sessions, the face mesh, caches).
        warm_faces = decode(items[:WARMUP_FACES])
        studio_end_to_end(items[:WARMUP_FACES])
        onnx_from_faces(warm_faces)

        timings: dict = {}

        def record(name, fn):
            median, every, result = timed(fn, args.repeats)
            timings[name] = {"median_s": median, "all_s": every, "faces_per_s": len(items) / median}
            print(f"{name}: {median:.1f} s, {len(items) / median:.0f} faces/s", flush=True)
            if save:
                save(results | {"timings": timings})
            return result

        prediction_table = record("studio: predict_sources, files to rows", studio_end_to_end)
        faces = record("decoding the files alone (read_item)", lambda: decode(items))
        geometry = record("studio: geometry alone (TrainedModel.geometry)", lambda: model.geometry(faces))
        studio = record(
            "studio: predict_faces, geometry given (encoder + head)", lambda: model.predict_faces(faces, geometry)
        )
        record("studio: predict_faces from decoded faces (geometry computed)", lambda: model.predict_faces(faces))
        record(
            "ONNX: decode + fit + geometry + graph, files to probabilities",
            lambda: onnx_from_faces(decode(items)),
        )
        record("ONNX: fit + geometry + graph, from decoded faces", lambda: onnx_from_faces(faces))
        pixels = record("ONNX: fitting to the card's size alone", lambda: card_pixels(faces, size))
        onnx_out = record("ONNX: the graph alone (pixels and geometry ready)", lambda: onnx_graph(pixels, geometry))
        results["timings"] = timings

        studio_pixels = model.pixels(faces)
        rows = prediction_table.faces
        assert len(rows) == len(items) and all(row.ok for row in rows), "every val face has a prediction"
        table_fused = np.array([[row.fused[name] for name in classes] for row in rows if row.fused])
        table_pred = np.array([classes.index(row.predicted) for row in rows if row.predicted])
        onnx_pred = onnx_out["fused"].argmax(1)
        studio_pred = studio.fused.argmax(1)
        levels = {"fused": studio.fused, **{name: studio.level(name) for name in model.levels}}
        results["agreement"] = {
            "card_fit_pixels_max_abs_diff": int(np.abs(pixels.astype(int) - studio_pixels.astype(int)).max()),
            "card_fit_pixels_share_equal": float((pixels == studio_pixels).mean()),
            "max_abs_diff": {
                name: float(np.abs(onnx_out[name] - values).max())
                for name, values in levels.items()
                if values is not None and name in onnx_out
            },
            # the rows' probabilities are rounded to 6 decimals (core/deploy/rows.py)
            "fused_max_abs_diff_vs_predict_rows": float(np.abs(onnx_out["fused"] - table_fused).max()),
            "same_argmax": float((onnx_pred == studio_pred).mean()),
            "same_argmax_vs_predict_rows": float((onnx_pred == table_pred).mean()),
            "geometry_no_mesh": int(geometry[:, -1].sum()) if geometry is not None else None,
        }
        known = labels >= 0
        no_mesh_pred = None
        if geometry is not None:  # what a consumer that cannot run the face mesh gets: the "no mesh" vector
            no_mesh = np.zeros_like(geometry)
            no_mesh[:, -1] = 1.0
            no_mesh_pred = onnx_graph(pixels, no_mesh)["fused"].argmax(1)
        results["accuracy"] = {
            "onnx_no_mesh_vector": (
                float((no_mesh_pred[known] == labels[known]).mean()) if no_mesh_pred is not None else None
            ),
            "studio_predict_rows": float((table_pred[known] == labels[known]).mean()),
            "studio_predict_faces": float((studio_pred[known] == labels[known]).mean()),
            "onnx": float((onnx_pred[known] == labels[known]).mean()),
            "labeled_faces": int(known.sum()),
            "run_val_metrics": brief_metrics(card["metrics"].get("val")),
        }
    results["after"] = machine_state()
    return results


STUDIO_FACES = "studio: predict_faces from decoded faces (geometry computed)"
ONNX_FACES = "ONNX: fit + geometry + graph, from decoded faces"


def _spread(timings: dict, name: str) -> str:
    every = timings[name]["all_s"]
    return f"repeats {min(every):.1f}-{max(every):.1f} s"


def _overlap(timings: dict, a: str, b: str) -> bool:
    first, second = timings[a]["all_s"], timings[b]["all_s"]
    return min(first) <= max(second) and min(second) <= max(first)


def _val_accuracy(metrics) -> str:
    try:
        return f"{100 * metrics['fused']['accuracy']:.2f}"
    except (TypeError, KeyError):
        return "?"


def render(results: dict) -> str:
    faces = results["faces"]
    rows = [
        f"| {name} | {t['median_s']:.1f} | {', '.join(f'{s:.1f}' for s in t['all_s'])} | **{t['faces_per_s']:,.0f}** |"
        for name, t in results["timings"].items()
    ]
    agree, acc, run_info, card = results["agreement"], results["accuracy"], results["run"], results["card"]
    diffs = ", ".join(f"{name} {value:.1e}" for name, value in agree["max_abs_diff"].items())
    t = results["timings"]
    studio_faces = t[STUDIO_FACES]["median_s"]
    onnx_faces = t[ONNX_FACES]["median_s"]
    geometry_s = t["studio: geometry alone (TrainedModel.geometry)"]["median_s"]
    graph_s = t["ONNX: the graph alone (pixels and geometry ready)"]["median_s"]
    encoder_head_s = t["studio: predict_faces, geometry given (encoder + head)"]["median_s"]
    end_to_end = t["studio: predict_sources, files to rows"]["median_s"]
    inputs = ", ".join(f"`{name}` {dtype} {shape}" for name, dtype, shape in card["inputs"])
    before, after = results["before"], results["after"]
    unlabeled = card.get("unlabeled_train_faces")
    labeled_note = f" and {unlabeled:,} unlabeled" if unlabeled else ", no unlabeled ones"
    reading = [
        f"- Where the time goes: the face mesh (geometry) takes {geometry_s:.1f} s of the studio's "
        f"{studio_faces:.1f} s from decoded faces ({100 * geometry_s / studio_faces:.0f}%); encoder and head "
        f"{encoder_head_s:.1f} s. Decoding the 48-px files is {t['decoding the files alone (read_item)']['median_s']:.1f} s "
        f"of the end-to-end {end_to_end:.1f} s.",
        f"- The exported graph alone runs {faces / graph_s:,.0f} faces/s against the studio's encoder + head "
        f"{faces / encoder_head_s:,.0f}/s (ONNX Runtime runs the image tower in both; the studio's path adds its pixel "
        "preparation and normalisation in torch, the feature engine's 16-image calls, the float16 rounding of the "
        "cache and the head in torch). With the geometry computed, which the graph cannot hold, "
        f"the ONNX path takes {onnx_faces:.1f} s ({_spread(t, ONNX_FACES)}) and the studio's {studio_faces:.1f} s "
        f"({_spread(t, STUDIO_FACES)}) from the same decoded faces: "
        + (
            "the ranges overlap, so the export is no faster end to end for a geometry run: the face mesh, "
            "outside the graph, is about half of either path."
            if _overlap(t, ONNX_FACES, STUDIO_FACES)
            else ("the ONNX path is faster." if onnx_faces < studio_faces else "the studio's path is faster.")
        ),
        f"- The two paths agree: fused probabilities within {agree['max_abs_diff'].get('fused', float('nan')):.1e} "
        f"(every output: {diffs}), the same class for {100 * agree['same_argmax']:.2f}% of faces; val accuracy "
        f"{100 * acc['studio_predict_rows']:.2f}% (studio, `predict` rows), {100 * acc['onnx']:.2f}% (ONNX), "
        f"the run's stored val fused accuracy {_val_accuracy(acc['run_val_metrics'])}%."
        + (
            f" Given the 'no mesh' vector for every face instead of its geometry (what a consumer without "
            f"the face mesh can give), the ONNX model scores {100 * acc['onnx_no_mesh_vector']:.2f}%: the "
            "geometry input is not optional in practice."
            if acc.get("onnx_no_mesh_vector") is not None
            else ""
        ),
        "- The card's `fit` words, coded here independently, give the studio's pixels "
        + (
            "exactly"
            if agree["card_fit_pixels_max_abs_diff"] == 0
            else f"within {agree['card_fit_pixels_max_abs_diff']} grey levels "
            f"({100 * agree['card_fit_pixels_share_equal']:.1f}% of values equal)"
        )
        + ".",
    ]
    return "\n".join(
        [
            "## Predicting new faces: the studio's path against the exported ONNX model",
            "",
            f"`python -m bench.predict_throughput`: the {faces:,} val faces (FER2013 PublicTest, 48x48 grey, "
            f"after import's duplicate check) of `/tmp/fer-predict`, run {run_info['id']} ({run_info['algorithm']}, "
            f"{run_info['mode']} mode, geometry {'on' if run_info['geometry'] else 'off'}, levels "
            f"{', '.join(run_info['levels'])}, step {run_info['step']}; trained on {card['labeled_faces']:,} labeled FER2013 train faces"
            f"{labeled_note}). Encoder: {run_info['encoder']}. "
            "**Studio**: `core.deploy.predict.predict_sources` on a CSV manifest of the val files with "
            "`--faces none` (what `python main.py predict` runs), and its parts on the decoded faces. "
            f"**ONNX**: `export_model(..., fmt='onnx')` ({results['model_mb']:.1f} MB, exported in "
            f"{results['export_s']:.0f} s), ONNX Runtime {results['onnxruntime']} with inputs {inputs}; the pixels "
            "fitted from the card's `preprocessing.fit` words, the geometry from `TrainedModel.geometry`; batches "
            f"of {BATCH}. Threads: {results['threads']}; torch {results['torch_threads']} thread(s), ONNX Runtime "
            "intra-op the same, no spinning. Each time is the total over all val faces, median of "
            f"{results['repeats']} after a warm-up of {WARMUP_FACES} faces. Machine: {results['machine']}. Load "
            f"(1/5/15 min) {before['load_1_5_15']} before, {after['load_1_5_15']} after; busy beside it: "
            f"{'; '.join(before['busy']) or 'nothing'} (before), {'; '.join(after['busy']) or 'nothing'} (after). "
            f"{results['note']}",
            "",
            "| path | median s | every repeat s | faces/s |",
            "|---|---|---|---|",
            *rows,
            "",
            "**Reading.**",
            *reading,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_PROJECT)
    parser.add_argument("--run", type=int, help="run id (default: the newest finished run with a checkpoint)")
    parser.add_argument("--repeats", type=int, default=3)
    add_report_arguments(parser, JSON_RESULTS)
    args = parser.parse_args(argv)
    return publish(SECTION, render(saved_or_run(args, run)), args)


if __name__ == "__main__":
    raise SystemExit(main())
