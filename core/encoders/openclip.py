"""`clip:MODEL[:PRETRAINED]` through open_clip; PRETRAINED is a published tag or a local file.

Published weights are looked up in the local caches first. Only when they are missing, and
downloads are allowed (HF_HUB_OFFLINE unset) and the hub answers within seconds, is
open_clip asked to download: a machine without network gets a clear EncoderError at once,
never a hang inside a retrying HTTP client.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

import torch

from core.encoders.base import Encoder, EncoderError, file_sha256, resolve_device, rgb_triple, safe_key

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")
PROBE_TIMEOUT_S = 4.0


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise EncoderError("clip encoders need open_clip: pip install open_clip_torch") from None
    return open_clip


def _looks_like_path(text: str) -> bool:
    return (
        any(sep in text for sep in ("/", "\\", os.sep))
        or text.startswith(("~", "."))
        or text.lower().endswith(CHECKPOINT_SUFFIXES)
        or Path(text).expanduser().exists()
    )


def _known_models_hint(open_clip) -> str:
    with_weights = sorted({name for name, _ in open_clip.list_pretrained()})
    preferred = [m for m in ("ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50", "convnext_base_w") if m in with_weights]
    rest = [m for m in with_weights if m not in preferred]
    return (
        f"models with published weights include {', '.join(preferred + rest[:10])} "
        f"({len(with_weights)} in all: see open_clip.list_pretrained())"
    )


def create_clip_encoder(spec: str, device: str | torch.device | None = None) -> ClipEncoder:
    rest = spec.split(":", 1)[1] if ":" in spec else ""
    model_name, _, pretrained = (part.strip() for part in rest.partition(":"))
    if not model_name:
        raise EncoderError(f"bad encoder spec {spec!r}: expected clip:MODEL[:PRETRAINED], e.g. clip:ViT-B-32:openai")
    open_clip = _open_clip()
    if model_name not in open_clip.list_models():
        raise EncoderError(f"unknown open_clip model {model_name!r}; {_known_models_hint(open_clip)}")
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if not pretrained:
        if not tags:
            raise EncoderError(
                f"open_clip model {model_name!r} has no published weights; "
                f"give a local checkpoint: clip:{model_name}:/path/to/checkpoint.pt"
            )
        pretrained = "openai" if "openai" in tags else tags[0]
    if pretrained not in tags and _looks_like_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise EncoderError(f"CLIP checkpoint file not found: {path}")
        return ClipEncoder(spec, model_name, None, path.resolve(), {}, device)
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        raise EncoderError(
            f"open_clip model {model_name!r} has no weights tagged {pretrained!r}; "
            f"known tags: {', '.join(tags) or 'none'}; or give a local checkpoint file path"
        )
    checkpoint = find_cached_checkpoint(cfg) or _download(model_name, pretrained, cfg)
    return ClipEncoder(spec, model_name, pretrained, Path(checkpoint), cfg, device)


def find_cached_checkpoint(cfg: dict) -> str | None:
    """The weights file for a pretrained config if it already lies in a local cache, else None."""
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_WEIGHTS_NAME
        from open_clip.pretrained import _get_safe_alternatives

        # open_clip's convention: 'org/repo/' means the default file name, 'org/repo/file' that file.
        repo_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        for name in [*_get_safe_alternatives(filename), filename]:
            found = try_to_load_from_cache(repo_id, name)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    if cfg.get("url"):
        url = cfg["url"]
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if path.is_file() and _url_file_ok(url, path):
            return str(path)
    return None


def _url_file_ok(url: str, path: Path) -> bool:
    # open_clip's own rule: OpenAI URLs carry the full sha256, mlfoundations file names a prefix.
    if "openaipublic" in url:
        expected = url.split("/")[-2]
    elif "mlfoundations" in url:
        expected = os.path.splitext(os.path.basename(url))[0].split("-")[-1]
    else:
        return True
    return file_sha256(path).startswith(expected)


def downloads_disabled() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    if any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags):
        return True
    try:  # huggingface_hub reads the variable once, at import: honour what it decided too
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def _host_reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    # Name resolution has no timeout of its own, so the probe runs in a daemon thread.
    result: list[bool] = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _missing_weights(model_name: str, tag: str, why: str) -> EncoderError:
    return EncoderError(
        f"CLIP weights {model_name}/{tag} are not in the local cache (Hugging Face cache or ~/.cache/clip) "
        f"and {why}. Fix: download them once on a machine with network access and HF_HUB_OFFLINE unset, "
        f"e.g. python -c \"import open_clip; open_clip.create_model('{model_name}', pretrained='{tag}')\" "
        f"(then copy the cache over), or give a local checkpoint file: clip:{model_name}:/path/to/weights.pt. "
        f"The 'offline' encoder needs no download."
    )


def _download(model_name: str, tag: str, cfg: dict) -> str:
    if downloads_disabled():
        raise _missing_weights(model_name, tag, "downloads are switched off (HF_HUB_OFFLINE=1)")
    host = "huggingface.co" if cfg.get("hf_hub") else (cfg.get("url", "").split("/")[2:3] or ["huggingface.co"])[0]
    if not _host_reachable(host):
        raise _missing_weights(model_name, tag, f"{host} cannot be reached from here")
    from open_clip.pretrained import download_pretrained

    log.info("downloading CLIP weights %s/%s", model_name, tag)
    try:
        path = download_pretrained(cfg)
    except Exception as exc:
        raise _missing_weights(model_name, tag, f"the download failed ({exc})") from exc
    if not path or not os.path.isfile(path):
        raise _missing_weights(model_name, tag, "the download produced no file")
    return path


class ClipEncoder(Encoder):
    def __init__(
        self,
        spec: str,
        model_name: str,
        tag: str | None,
        checkpoint: Path,
        cfg: dict,
        device: str | torch.device | None = None,
    ):
        open_clip = _open_clip()
        self.spec = spec
        self._model_name, self._tag, self._checkpoint = model_name, tag, checkpoint
        try:
            # Always from the resolved local file, so open_clip itself never goes to the network.
            model = open_clip.create_model(
                model_name,
                pretrained=str(checkpoint),
                force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                force_preprocess_cfg={k: cfg[k] for k in ("mean", "std") if k in cfg},
            )
            self._tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as exc:
            raise EncoderError(f"could not load CLIP {model_name} from {checkpoint}: {exc}") from exc
        model.eval()
        self._model = model
        self.image_tower = model.visual
        self.image_dim = int(model.visual.output_dim)
        self.text_dim = self.image_dim  # contrastive towers share one embedding space
        size = model.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        self.mean = rgb_triple(pcfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = rgb_triple(pcfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        if tag is not None:  # published tags are immutable
            self.cache_key = safe_key(f"clip-{model_name}-{tag}")
            self._verified = "published tag, loaded from the local cache"
        else:
            self.cache_key = safe_key(f"clip-{model_name}-file-{file_sha256(checkpoint)[:16]}")
            self._verified = "local checkpoint, loaded strictly (every key matched)"
        self.to(resolve_device(device))

    def _move_text_tower(self, device: torch.device) -> None:
        self._model.to(device)  # the text parts live on the full model, beside .visual

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, self.text_dim), device=self._device)
        tokens = self._tokenizer(list(texts)).to(self._device)
        with torch.no_grad():
            return self._model.encode_text(tokens, normalize=True).float()

    def spatial_features(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            f"{self.spec}: CLIP's vision transformer has no convolutional feature map; local "
            "attention needs the 'offline' or 'tiny' encoder"
        )

    def describe(self) -> str:
        weights = f"{self._tag} weights" if self._tag else "local weights"
        return (
            f"clip: open_clip {self._model_name}, {weights} from {self._checkpoint} ({self._verified}), "
            f"{self.input_size} px, {self.image_dim}-d; on {self._device}"
        )
