"""Face detection on real photos: MediaPipe's detectors as the importer runs them
(core/ingest/faces.find_faces) against OpenCV's Haar cascade, counts and time per photo.

The photos are the real ones this machine has offline, each with its number of faces counted by
eye: scikit-image's astronaut (1 face) and cameraman (1, small), its coffee, cat and rocket
photos (0), and, where given with --extra, the sample images of the insightface 0.7.3 source
package (t1.jpg: a group photo of 6; four photos of face masks with no face: 0). Every photo is
also tried turned by -40, -20, 20 and 40 degrees (on a canvas large enough to keep it whole) and
at half and double size, so each appears 7 times. Found faces are matched to none: a photo
counts its faces, and a face found beyond its true count is a false face, one short a miss.

    python -m bench.face_detection [--extra DIR] [--json-out FILE]   # writes the "face-detection" section
    python -m bench.face_detection --render docs/results/face_detection.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bench.report import machine_summary, publish, saved_or_run
from core.ingest.faces import DETECTOR_HAAR, DETECTOR_LANDMARKS, aligned_crop, expand_box, find_faces

TURNS = (-40, -20, 20, 40)
SCALES = (0.5, 2.0)
NO_MESH_CHECK = "blazeface, no mesh check"
ARMS = (
    (DETECTOR_LANDMARKS, DETECTOR_LANDMARKS, True),
    (NO_MESH_CHECK, DETECTOR_LANDMARKS, False),
    (DETECTOR_HAAR, DETECTOR_HAAR, True),
)
TITLES = {
    DETECTOR_LANDMARKS: "MediaPipe (short + full range + tiles, mesh check), the default",
    NO_MESH_CHECK: "MediaPipe without the mesh check",
    DETECTOR_HAAR: "OpenCV Haar cascade, the fallback",
}
EXTRA_FACES = {"t1.jpg": 6, "mask_black.jpg": 0, "mask_blue.jpg": 0, "mask_green.jpg": 0, "mask_white.jpg": 0}


def base_photos(extra: Path | None) -> list[tuple[str, np.ndarray, int]]:
    from skimage import data

    photos = [
        ("astronaut", data.astronaut(), 1),
        ("camera", np.stack([data.camera()] * 3, axis=2), 1),
        ("coffee", data.coffee(), 0),
        ("chelsea (cat)", data.chelsea(), 0),
        ("rocket", data.rocket(), 0),
    ]
    if extra is not None:
        for name, faces in EXTRA_FACES.items():
            path = extra / name
            if path.is_file():
                photos.append((name, np.asarray(Image.open(path).convert("RGB")), faces))
    return photos


def turned(rgb: np.ndarray, degrees: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(height * sin + width * cos), int(height * cos + width * sin)
    matrix[0, 2] += new_w / 2 - width / 2
    matrix[1, 2] += new_h / 2 - height / 2
    # A black surround: a reflected one would show mirrored copies of the people at the edges.
    return cv2.warpAffine(rgb, matrix, (new_w, new_h), borderMode=cv2.BORDER_CONSTANT)


def variants(photos):
    for name, rgb, faces in photos:
        yield name, "as is", rgb, faces
        for degrees in TURNS:
            yield name, f"turned {degrees:+d}", turned(rgb, degrees), faces
        for scale in SCALES:
            size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
            yield name, f"x{scale:g}", cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), faces


def level_residual(image: Image.Image, faces) -> list[float]:
    """For each face found, the eye line's tilt left in its levelled crop, measured again."""
    residual = []
    for face in faces:
        crop = aligned_crop(image, expand_box(face.box, 0.25, *image.size), face.angle)
        again = find_faces(crop)
        if again:
            residual.append(abs(again[0].angle))
    return residual


def run(extra: Path | None) -> dict:
    photos = base_photos(extra)
    for detector in (DETECTOR_LANDMARKS, DETECTOR_HAAR):  # load both before timing
        find_faces(Image.fromarray(photos[0][1]), detector)
    rows = []
    for name, variant, rgb, truth in variants(photos):
        image = Image.fromarray(np.ascontiguousarray(rgb))
        row = {"photo": name, "variant": variant, "size": list(image.size), "truth": truth}
        for arm, detector, check in ARMS:
            started = time.perf_counter()
            faces = find_faces(image, detector, mesh_check=check)
            row[arm] = {"found": len(faces), "ms": (time.perf_counter() - started) * 1000}
            if arm == DETECTOR_LANDMARKS:
                row["residual"] = level_residual(image, faces)
        rows.append(row)
        print(
            f"{name:<16} {variant:<10} truth {truth}  "
            + "  ".join(f"{arm} {row[arm]['found']}" for arm, _detector, _check in ARMS),
            flush=True,
        )
    return {"machine": machine_summary(), "rows": rows, "photos": [p[0] for p in photos]}


def _totals(rows, detector: str) -> dict:
    found = [r[detector]["found"] for r in rows]
    truth = [r["truth"] for r in rows]
    return {
        "true": sum(truth),
        "found_true": sum(min(f, t) for f, t in zip(found, truth)),
        "missed": sum(max(0, t - f) for f, t in zip(found, truth)),
        "false": sum(max(0, f - t) for f, t in zip(found, truth)),
        "exact": sum(f == t for f, t in zip(found, truth)),
        "photos": len(rows),
        "ms": statistics.median(r[detector]["ms"] for r in rows),
        "ms_max": max(r[detector]["ms"] for r in rows),
    }


def render(r: dict) -> str:
    note = r.get("note")
    rows = r["rows"]
    lines = [
        "## Face detection on real photos: MediaPipe against the Haar cascade",
        "",
        "`python -m bench.face_detection --extra DIR` - the importer's `find_faces` on every photo of "
        f"{', '.join(r['photos'])} (faces counted by eye; the insightface 0.7.3 source package's sample "
        "images where given, read from outside the repository; not committed), each also turned by -40, -20, +20 and +40 "
        "degrees and at half and double size. A face found beyond a photo's count is a false face, one short a "
        f"miss. One thread; machine: {r['machine']}; {note or 'nothing else running'}.",
        "",
        "| detector | photos with the right count | faces found / present | missed | false faces | "
        "ms per photo (median, worst) |",
        "|---|---|---|---|---|---|",
    ]
    for detector, title in TITLES.items():
        t = _totals(rows, detector)
        lines.append(
            f"| {title} | {t['exact']} of {t['photos']} | {t['found_true']} / {t['true']} | "
            f"{t['missed']} | {t['false']} | {t['ms']:.0f}, {t['ms_max']:.0f} |"
        )
    by_variant: dict[str, list] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], []).append(row)
    lines += [
        "",
        "By variant, faces found / present (false faces in brackets):",
        "",
        "| variant | MediaPipe | without the mesh check | Haar |",
        "|---|---|---|---|",
    ]
    for variant, group in by_variant.items():
        cells = []
        for detector in TITLES:
            t = _totals(group, detector)
            cells.append(f"{t['found_true']} / {t['true']} ({t['false']})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    residual = [v for row in rows for v in row["residual"]]
    if residual:
        lines += [
            "",
            f"Levelling: each face MediaPipe found was cut and turned as the importer does, and its "
            f"eye line measured again in the crop: {statistics.median(residual):.1f} degrees median, "
            f"{np.percentile(residual, 90):.1f} at the 90th percentile, {max(residual):.1f} at worst "
            f"({len(residual)} faces).",
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extra", type=Path, help="folder holding insightface's sample images (t1.jpg, mask_*.jpg)")
    parser.add_argument("--note", help="what else ran on the machine")
    parser.add_argument("--json-out", type=Path, help="also save the results here")
    parser.add_argument("--render", type=Path, help="write the section from results saved by --json-out")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    results = saved_or_run(args, lambda a, _save: {**run(a.extra), "note": a.note})
    return publish("face-detection", render(results), args)


if __name__ == "__main__":
    sys.exit(main())
