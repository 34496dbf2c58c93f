"""A finished run as a model for faces it never saw: `load_trained_model` rebuilds the run's
encoder, its EMA head (the weights that wrote its predictions), its thresholds and memory bank from
the checkpoint, and `TrainedModel.predict_faces` predicts face images the way the run predicted its
own faces.

Head mode reads what the run read: the image tower's features of the face as it is (the cache's
view 0) through the same engine as the feature cache, rounded to float16 as the cache stores them,
with the face mesh's geometry vector (rounded likewise) where the run used geometry. Fine-tune mode
runs the run's own tuned tower. The instance level compares with the bank as training left it; no
new face is one of its entries, so none is left out of its own vote (the studio's stored
predictions leave a train face's own slot out).

`TrainedModel.graph()` is the same computation as one torch module from uint8 pixels to the
levels and their fusion, which `core.deploy.export` traces to ONNX or TorchScript.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from sqlalchemy import select
from torch import nn

from core.classes import class_names
from core.ssl.algorithms import Algorithm
from core.ssl.heads import HeadOutput
from core.ssl.levels import FrozenBank
from core.store.models import RUN_FINISHED, Run
from core.store.project import Project
from core.training.settings import TrainSettings

FACE_BATCH = 32  # faces per pass through the model: the feature engine's calls are 16 images


class ModelError(ValueError):
    """A run that cannot be used as a model; the message says which and why."""


@dataclass
class FacePredictions:
    """Per face (rows in the order given): each level's class probabilities (None: the run has
    no such level), their fusion, and the head's L2-normalised embedding."""

    fused: np.ndarray
    semantic: np.ndarray
    text: np.ndarray | None
    instance: np.ndarray | None
    embedding: np.ndarray

    def level(self, name: str) -> np.ndarray | None:
        return {"semantic": self.semantic, "text": self.text, "instance": self.instance}[name]


def usable_run(project: Project, run_id: int | None = None) -> tuple[Run, Path]:
    """Run `run_id` (default: the newest finished run that still has its checkpoint) and its
    checkpoint file, or a ModelError that says what is wrong."""
    with project.session() as session:
        if run_id is None:
            runs = session.scalars(select(Run).where(Run.status == RUN_FINISHED).order_by(Run.id.desc())).all()
            for candidate in runs:
                if candidate.checkpoint and project.resolve_path(candidate.checkpoint).is_file():
                    session.expunge(candidate)
                    return candidate, project.resolve_path(candidate.checkpoint)
            raise ModelError(
                "this project has no finished run with a checkpoint yet; train one (python main.py train PROJECT)"
                if not runs
                else f"none of the project's {len(runs)} finished run(s) still has its checkpoint file"
            )
        found = session.get(Run, run_id)
        if found is None:
            raise ModelError(f"there is no run {run_id} in this project")
        session.expunge(found)
        run = found
    if run.status != RUN_FINISHED:
        raise ModelError(f"run {run_id} is {run.status}; only a finished run can predict")
    checkpoint = project.resolve_path(run.checkpoint) if run.checkpoint else None
    if checkpoint is None or not checkpoint.is_file():
        where = f" (expected {checkpoint})" if checkpoint else ""
        raise ModelError(
            f"run {run_id} has no checkpoint file{where}: a superseded refit loses it; use its parent or a newer run"
        )
    return run, checkpoint


def load_trained_model(project: Project, run_id: int | None = None, device: str = "cpu") -> TrainedModel:
    """The finished run `run_id` (default: the newest one with a checkpoint) ready to predict."""
    from core.encoders import EncoderError, get_encoder
    from core.encoders.text import class_text_embeddings, load_descriptions
    from core.training.checkpoints import CheckpointError, load_checkpoint
    from core.training.geometry import head_input_dim, input_width_problem
    from core.training.head import build_method

    run, checkpoint = usable_run(project, run_id)
    settings = TrainSettings.from_dict(run.config)
    try:
        state = load_checkpoint(checkpoint, map_location=device)
    except CheckpointError as exc:
        raise ModelError(f"run {run.id}: {exc}") from None
    try:
        encoder = get_encoder(settings.encoder, device=device)
    except EncoderError as exc:
        raise ModelError(f"run {run.id} needs the encoder {settings.encoder!r}: {exc}") from None
    descriptions_file = project.resolve_path(settings.descriptions) if settings.descriptions else None
    descriptions = load_descriptions(descriptions_file)
    features_dir = writable_cache(project)
    class_text = class_text_embeddings(encoder, descriptions, features_dir)
    in_dim = head_input_dim(encoder.image_dim, settings.uses_geometry)
    torch_device = torch.device(device)
    if settings.mode == "head":
        algorithm, head = build_method(settings, in_dim, class_text, 1, torch_device)
        problem = input_width_problem(state["ema"], head.input_norm.normalized_shape[0])
        if problem:
            raise ModelError(f"run {run.id} cannot be loaded: {problem}")
        network: nn.Module = head
    else:
        from core.training.finetune import FineTuneModel, spatial_pool

        pool = spatial_pool(encoder.image_tower, encoder.input_size, settings.spatial())
        algorithm, head = build_method(
            settings, encoder.image_dim if pool is None else pool.channels, class_text, 1, torch_device
        )
        network = FineTuneModel(encoder.image_tower, head, pool)
    try:
        network.load_state_dict(state["ema"])
        algorithm.load_state_dict(state["algorithm"])
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"run {run.id}'s checkpoint {checkpoint} does not fit its settings: {exc}") from None
    network.to(torch_device).eval()
    return TrainedModel(
        run=run,
        settings=settings,
        step=int(state["step"]),
        encoder=encoder,
        network=network,
        algorithm=algorithm,
        class_text=class_text,
        descriptions=descriptions,
        features_dir=features_dir,
    )


def writable_cache(project: Project) -> Path:
    """Where the feature engine's model and the class text embeddings are cached: the project's
    feature cache folder where it can be written (derived files only: the project's data is read
    through a read-only database), else a private temporary folder."""
    folder = project.cache_dir("features")
    if folder.is_dir() and os.access(folder, os.W_OK):
        return folder
    return Path(tempfile.mkdtemp(prefix="fer-predict-"))


class TrainedModel:
    def __init__(
        self,
        *,
        run: Run,
        settings: TrainSettings,
        step: int,
        encoder,
        network: nn.Module,
        algorithm: Algorithm,
        class_text: torch.Tensor,
        descriptions: dict[str, list[str]],
        features_dir: Path,
    ):
        self.run = run
        self.run_id = int(run.id)
        self.settings = settings
        self.step = step
        self.encoder = encoder
        self.network = network
        self.algorithm = algorithm
        self.class_text = class_text
        self.descriptions = descriptions
        self.features_dir = features_dir
        self.classes = class_names()
        self.thresholds = algorithm.thresholds().cpu().numpy()
        self._preprocess = encoder.preprocessor()  # one copy: it keeps its normalising constants
        self._engine = None
        self._mesh: tuple | None = None  # the face detector and mesh, loaded at the first geometry
        self.levels = self._levels_present()

    # -- what it is ----------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def uses_geometry(self) -> bool:
        return self.settings.uses_geometry

    @property
    def input_size(self) -> int:
        return int(self.encoder.input_size)

    @property
    def geometry_dim(self) -> int:
        from core.training.geometry import GEOMETRY_DIM

        return GEOMETRY_DIM if self.uses_geometry else 0

    def _levels_present(self) -> tuple[str, ...]:
        """The levels its predictions carry (the instance level only once past its warm-up)."""
        from core.ssl.levels import normalize

        probe = HeadOutput(
            normalize(torch.ones((1, self.algorithm.bank.features.shape[1] if self.algorithm.bank else 8))),
            torch.zeros((1, len(self.classes))),
            normalize(torch.ones((1, self.class_text.shape[1]))),
        )
        levels = self.algorithm.level_probs(_on(probe, self.algorithm.device), self.step)
        return tuple(name for name in ("semantic", "text", "instance") if getattr(levels, name) is not None)

    # -- the studio's path ---------------------------------------------------------------------
    def pixels(self, faces: list[PILImage.Image]) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB: the faces fitted to the encoder's square as training saw them."""
        return self._preprocess.to_uint8(faces).permute(0, 2, 3, 1).contiguous().numpy()

    def geometry(self, faces: list[PILImage.Image]) -> np.ndarray | None:
        """(N, G) float32 geometry vectors of the faces (the face mesh, as the cache computes it
        for a face's view 0), or None where the run reads no geometry."""
        if not self.uses_geometry:
            return None
        from core.training.geometry import POINTS, _mesh_models, geometry_vector, mesh_of_face

        if self._mesh is None:
            self._mesh = _mesh_models()
        points = np.zeros((len(faces), POINTS, 3), dtype=np.float16)  # the cache's precision
        found = np.zeros(len(faces), dtype=bool)
        for i, face in enumerate(faces):
            mesh = mesh_of_face(np.asarray(face.convert("RGB")), *self._mesh)
            if mesh is not None:
                points[i], found[i] = mesh, True
        return geometry_vector(points, found)

    def predict_faces(self, faces: list[PILImage.Image], geometry: np.ndarray | None = None) -> FacePredictions:
        """Predictions for RGB face images (cut and levelled as import cuts them); `geometry`
        precomputed by `geometry(faces)`, else computed here."""
        parts: list[FacePredictions] = []
        for start in range(0, len(faces), FACE_BATCH):
            chunk = faces[start : start + FACE_BATCH]
            normalised = self._preprocess.normalize(self._preprocess.to_uint8(chunk))
            vectors = geometry[start : start + FACE_BATCH] if geometry is not None else self.geometry(chunk)
            parts.append(self.predict_tensors(normalised, None if vectors is None else torch.from_numpy(vectors)))
        if not parts:
            raise ModelError("no faces to predict")
        return FacePredictions(
            fused=np.concatenate([p.fused for p in parts]),
            semantic=np.concatenate([p.semantic for p in parts]),
            text=_concat([p.text for p in parts]),
            instance=_concat([p.instance for p in parts]),
            embedding=np.concatenate([p.embedding for p in parts]),
        )

    @torch.no_grad()
    def predict_tensors(self, normalised: torch.Tensor, geometry: torch.Tensor | None) -> FacePredictions:
        from core.training.inference import predict_batches

        device = next(self.network.parameters()).device
        if self.mode == "head":
            features = torch.from_numpy(self._image_engine()(normalised.numpy()).astype(np.float16))
            if geometry is not None:
                features = torch.cat([features, geometry.to(torch.float16)], dim=1)
            inputs = features.float()
        else:
            inputs = normalised
        preds = predict_batches(self.network, self.algorithm, [(inputs.to(device), None)], self.step)
        return FacePredictions(preds.fused, preds.semantic, preds.text, preds.instance, preds.embedding)

    def _image_engine(self):
        if self._engine is None:
            from core.encoders.onnx_engine import image_engine

            self._engine = image_engine(self.encoder, self.features_dir / self.encoder.cache_key)
        return self._engine

    # -- one graph -----------------------------------------------------------------------------
    def graph(self) -> ModelGraph:
        return ModelGraph(self)


def _on(out: HeadOutput, device: torch.device) -> HeadOutput:
    return HeadOutput(out.embedding.to(device), out.logits.to(device), out.projected.to(device))


def _concat(parts: list[np.ndarray | None]) -> np.ndarray | None:
    return None if any(p is None for p in parts) else np.concatenate([p for p in parts if p is not None])


def image_features_module(tower: nn.Module, input_size: int) -> nn.Module:
    """The tower as a traceable module: the offline tower's adaptive 3x3 pooling of its 7x7 map
    written as the plain pooling ONNX can export (the feature engine's own graph)."""
    from core.encoders.offline import FEATURE_GRID, LiteTower
    from core.encoders.onnx_engine import GridPooledTower

    if isinstance(tower, LiteTower) and tower.grid == FEATURE_GRID and input_size == 112:
        return GridPooledTower(tower)
    return tower


class ModelGraph(nn.Module):
    """uint8 RGB pixels (N, S, S, 3) [+ geometry (N, G)] -> (fused, semantic, [text], [instance],
    embedding), the levels those of `TrainedModel.levels`. Normalisation is inside; the class text
    embeddings and the bank's entries are constants."""

    def __init__(self, model: TrainedModel):
        super().__init__()
        encoder = model.encoder
        self.head_mode = model.mode == "head"
        self.uses_geometry = model.uses_geometry
        self.step = model.step
        self.mean = nn.Parameter(torch.tensor(encoder.mean, dtype=torch.float32).view(1, 3, 1, 1), requires_grad=False)
        self.std = nn.Parameter(torch.tensor(encoder.std, dtype=torch.float32).view(1, 3, 1, 1), requires_grad=False)
        network = model.network
        self.spatial: nn.Module | None = None
        self.spatial_tower: Any = None  # the tuned tower whose feature map `spatial` pools
        if self.head_mode:
            self.tower = image_features_module(encoder.image_tower, model.input_size)
            self.head = network
        else:
            from core.training.finetune import FineTuneModel

            assert isinstance(network, FineTuneModel)  # load_trained_model builds one in fine-tune mode
            self.tower = image_features_module(network.tower, model.input_size)
            self.head = network.head
            self.spatial = network.spatial
            self.spatial_tower = network.tower
        self.algorithm = model.algorithm
        self.frozen_bank = FrozenBank(model.algorithm.bank) if model.algorithm.bank is not None else None
        self.levels = model.levels
        self.output_names = ["fused", *self.levels, "embedding"]
        self.eval()
        self.requires_grad_(False)  # an inference graph: its outputs carry no autograd history

    def forward(self, images: torch.Tensor, geometry: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        x = images.permute(0, 3, 1, 2).float().div(255.0)
        x = (x - self.mean) / self.std
        if self.spatial is not None:
            out: HeadOutput = self.head(self.spatial(self.spatial_tower.forward_spatial(x)))
        elif self.head_mode:
            features = self.tower(x).half().float()  # as the feature cache stores them
            if self.uses_geometry:
                if geometry is None:
                    raise ValueError("this model reads the face geometry: give the geometry input")
                features = torch.cat([features, geometry.half().float()], dim=1)
            out = self.head(features)
        else:
            out = self.head(self.tower(x))
        # The algorithm's own level code, asked with the bank as constants (FrozenBank answers
        # `probs` as MemoryBank does): the fusion rules live in one place.
        bank, self.algorithm.bank = self.algorithm.bank, self.frozen_bank  # type: ignore[assignment]
        try:
            levels = self.algorithm.level_probs(out, self.step)
        finally:
            self.algorithm.bank = bank
        values = {"semantic": levels.semantic, "text": levels.text, "instance": levels.instance}
        present = [values[name] for name in self.levels]
        return (levels.fused, *(v for v in present if v is not None), out.embedding)
