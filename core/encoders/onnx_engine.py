"""Engines that turn normalised image batches into features for the head-mode cache.

`OnnxImageEngine` runs the offline encoder's image tower on ONNX Runtime: about 5x the images
per second of torch eager on this project's 2-core CPUs, and the same features within
EXACT_TOLERANCE (docs/benchmarks.md, "Feature extraction speed"). The cache stores
float16, whose rounding step at the features' size (up to ~13) is ~0.008, so features from either
engine are interchangeable: the cache key does not name the engine.

The .onnx file is exported from the verified pip-installed weights at first use (nothing is
downloaded), next to the features it computes, with a sidecar recording its sha256 and what it
was built from; a file that does not match its sidecar, or was built from other weights or
another recipe, is rebuilt. A failed export, a missing or broken onnxruntime, fall back to the
torch engine with one log line saying why.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from core.encoders.base import file_sha256

log = logging.getLogger(__name__)

ENGINE_RECIPE = 1  # bump when the exported graph changes (export settings, pooling)
# Images per session call: small calls keep a layer's activations in the core's caches. At 112 px,
# one thread: 16 images 383/s, 64 images 312/s, 256 images 203/s; two threads: 528, 470, 340/s.
ENGINE_CHUNK = 16
EXACT_TOLERANCE = 1e-4  # max abs difference from torch eager on the probe batch at build time
OPSET = 17
PROBE_SEED = 20


class TorchImageEngine:
    """The encoder's own torch forward pass: the reference, and the fallback."""

    name = "torch"

    def __init__(self, encoder):
        self.encoder = encoder

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.encoder.encode_images(torch.from_numpy(batch)).cpu().numpy()


class GridPooledTower(torch.nn.Module):
    """The tower with its adaptive 3x3 pooling of the 7x7 map written as a plain 3x3 average with
    stride 2 (the same cells: rows 0-2, 2-4, 4-6), which ONNX can export with a dynamic batch."""

    def __init__(self, tower):
        super().__init__()
        self.tower = tower

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(self.tower.forward_spatial(x), 3, 2).flatten(1)


class OnnxImageEngine:
    name = "onnxruntime"

    def __init__(self, model_path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads burn a core waiting for work: wasteful beside the decoding thread and
        # ruinous beside another busy process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.threads = threads
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if len(batch) <= ENGINE_CHUNK:
            return self.session.run(None, {"images": batch})[0]
        return np.concatenate(
            [
                self.session.run(None, {"images": batch[i : i + ENGINE_CHUNK]})[0]
                for i in range(0, len(batch), ENGINE_CHUNK)
            ]
        )


def engine_files(folder: Path) -> tuple[Path, Path]:
    return folder / f"image-tower-r{ENGINE_RECIPE}.onnx", folder / f"image-tower-r{ENGINE_RECIPE}.json"


def model_is_current(model: Path, sidecar: Path, weights_sha256: str) -> bool:
    """The built file exists, is the one its sidecar describes, and came from these weights."""
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("recipe") == ENGINE_RECIPE
        and record.get("weights_sha256") == weights_sha256
        and model.is_file()
        and record.get("sha256") == file_sha256(model)
    )


def export_tower(tower, input_size: int, model: Path, sidecar: Path, weights_sha256: str) -> float:
    """Export the tower to `model`, check it against torch on a probe batch, then write the
    sidecar. Returns the probe's max abs difference; raises RuntimeError when it is too large."""
    import onnxruntime as ort

    was_training = tower.training
    wrapped = GridPooledTower(tower).eval()
    probe = torch.from_numpy(
        np.random.default_rng(PROBE_SEED).normal(size=(4, 3, input_size, input_size)).astype(np.float32)
    )
    model.parent.mkdir(parents=True, exist_ok=True)
    tmp = model.with_name(f".{model.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on the dynamic padding's Python ints
            reference = tower(probe).numpy()
            torch.onnx.export(
                wrapped,
                (probe,),
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=["images"],
                output_names=["features"],
                dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        got = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"]).run(
            None, {"images": probe.numpy()}
        )[0]
        difference = float(np.abs(got - reference).max()) if got.shape == reference.shape else float("inf")
        if not difference <= EXACT_TOLERANCE:
            raise RuntimeError(
                f"the exported tower differs from torch by {difference:.2g} "
                f"(more than {EXACT_TOLERANCE:g}) on the probe batch"
            )
        os.replace(tmp, model)
    finally:
        tmp.unlink(missing_ok=True)
        tower.train(was_training)
    record = {
        "recipe": ENGINE_RECIPE,
        "weights_sha256": weights_sha256,
        "sha256": file_sha256(model),
        "max_abs_difference": difference,
        "torch": torch.__version__,
        "opset": OPSET,
    }
    sidecar.write_text(json.dumps(record, indent=1))
    return difference


def onnx_engine(tower, input_size: int, folder: Path, weights_sha256: str, threads: int) -> OnnxImageEngine:
    """The ONNX Runtime engine for `tower`, building its model in `folder` when needed."""
    model, sidecar = engine_files(folder)
    if not model_is_current(model, sidecar, weights_sha256):
        difference = export_tower(tower, input_size, model, sidecar, weights_sha256)
        log.info("built %s (max abs difference from torch %.2g)", model, difference)
    return OnnxImageEngine(model, threads)


def image_engine(encoder, folder: Path, threads: int | None = None, prefer: str = "auto"):
    """The fastest engine that computes `encoder`'s cached features: ONNX Runtime where the
    encoder offers it (`onnx_engine(folder, threads)`) and it loads; torch otherwise.
    prefer: "auto", "onnx" (fail rather than fall back) or "torch"."""
    if prefer not in ("auto", "onnx", "torch"):
        raise ValueError(f"unknown feature engine {prefer!r}; one of auto, onnx, torch")
    build = getattr(encoder, "onnx_engine", None)
    if prefer == "torch" or build is None or encoder.device.type != "cpu":  # a GPU runs torch faster
        return TorchImageEngine(encoder)
    threads = threads or torch.get_num_threads()
    try:
        return build(folder, threads)
    except Exception as exc:
        if prefer == "onnx":
            raise
        log.warning(
            "features: ONNX Runtime unavailable (%s: %s); computing with torch instead (about 5x slower)",
            type(exc).__name__,
            exc,
        )
        return TorchImageEngine(encoder)
