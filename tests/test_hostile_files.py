"""Every kind of bad or odd file is reported by name and reason, and never stops an import."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from core.ingest import imageio
from core.ingest.imageio import ImageProblem, decode_image, load_face
from core.ingest.importer import ImportOptions, import_source
from core.store.models import Image, Label
from tests import imagegen
from tests.imagegen import face_like, save


@pytest.fixture
def hostile_folder(tmp_path):
    """One class folder mixing good files in odd modes with broken ones."""
    d = tmp_path / "src" / "happy"
    d.mkdir(parents=True)
    save(face_like(1), d / "gray_L.png")
    save(face_like(2, mode="LA"), d / "gray_alpha_LA.png")
    save(face_like(3, mode="RGBA"), d / "rgba.png")
    palette = face_like(4, mode="RGB").convert("P")
    palette.info["transparency"] = 0
    save(palette, d / "palette_P.png", transparency=0)
    save(face_like(5, mode="CMYK"), d / "cmyk.jpg", quality=90)
    save(face_like(6, mode="1"), d / "bilevel.png")
    imagegen.sixteen_bit_png(d / "sixteen_bit.png")
    save(PILImage.fromarray(np.full((32, 32), 70000, dtype=np.int32)), d / "int32.tif")
    save(PILImage.fromarray(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)), d / "float.tif")
    imagegen.exif_rotated_jpeg(d / "rotated_exif.jpg")
    save(face_like(8), d / "ça_😀_лицо.png")
    save(face_like(9, mode="RGB"), d / "webp_face.webp")
    # The broken ones.
    imagegen.truncated_jpeg(d / "truncated.jpg")
    (d / "random_bytes.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    (d / "notes.txt").write_text("not an image", encoding="utf-8")
    (d / "empty.png").write_bytes(b"")
    imagegen.huge_png_header(d / "bomb.png")
    (d / "zz_duplicate.png").write_bytes((d / "gray_L.png").read_bytes())
    (d / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: silently ignored
    return tmp_path / "src"


GOOD = 12
EXPECTED_REASONS = {
    "truncated.jpg": "truncated or corrupt",
    "random_bytes.jpg": "not an image",
    "notes.txt": "not an image",
    "empty.png": "empty file",
    "bomb.png": "too large to decode safely",
    "zz_duplicate.png": "duplicate",
}


def test_hostile_folder_imports_the_good_and_reports_the_bad(project, hostile_folder):
    report = import_source(project, hostile_folder, ImportOptions(faces="none"))
    assert report.imported == GOOD, report.summary()
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in report.skipped}
    assert set(reasons) == set(EXPECTED_REASONS), reasons
    for name, expected in EXPECTED_REASONS.items():
        assert expected in reasons[name], (name, reasons[name])
    assert "40000x40000" in reasons["bomb.png"]
    assert all(s.path.startswith(str(hostile_folder)) for s in report.skipped), "full paths name the files"
    with project.session() as s:
        rows = {
            p.rsplit("/", 1)[-1]: (w, h, mode)
            for p, w, h, mode in s.execute(select(Image.path, Image.width, Image.height, Image.source_mode)).all()
        }
        assert s.scalar(select(Label.label).limit(1)) == "happiness"
    assert rows["rotated_exif.jpg"][:2] == (30, 60), "EXIF orientation applied before measuring"
    assert rows["sixteen_bit.png"][2].startswith("I;16")
    assert rows["cmyk.jpg"][2] == "CMYK"
    assert "ça_😀_лицо.png" in rows
    # Every stored face loads as 8-bit RGB through the shared loader.
    with project.session() as s:
        for (path,) in s.execute(select(Image.path)):
            face = load_face(project.resolve_path(path))
            assert face.mode == "RGB" and min(face.size) > 0


def test_nothing_importable_gives_an_empty_import_not_a_crash(project, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"garbage")
    report = import_source(project, tmp_path / "bad")
    assert report.imported == 0 and len(report.skipped) == 1


def test_csv_entry_for_a_missing_file_is_reported_not_fatal(project, tmp_path):
    save(face_like(1), tmp_path / "ok.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nok.png,happy\ngone.png,sad\n", encoding="utf-8")
    report = import_source(project, manifest)
    assert report.imported == 1
    assert [(s.path.endswith("gone.png"), s.reason) for s in report.skipped] == [(True, "file not found")]


def test_sixteen_bit_keeps_its_brightness_range(tmp_path):
    path = imagegen.sixteen_bit_png(tmp_path / "a.png")
    image, _fmt, mode = decode_image(path.read_bytes())
    pixels = np.asarray(image)
    assert mode.startswith("I;16") and pixels.min() == 0 and pixels.max() == 255


def test_transparent_pixels_become_neutral_grey():
    rgba = PILImage.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert imageio.to_rgb(rgba).getpixel((0, 0)) == imageio.BACKGROUND_GREY


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 100)
    path = save(face_like(1, 64), tmp_path / "big.png")
    with pytest.raises(ImageProblem, match="file too large"):
        imageio.read_bytes(path)


def test_face_detection_crops_real_faces_and_reports_photos_without(project, tmp_path):
    data = pytest.importorskip("skimage.data")
    astronaut = PILImage.fromarray(data.astronaut())
    photo = PILImage.new("RGB", (1200, 700), (90, 90, 90))
    photo.paste(astronaut, (0, 0))
    photo.paste(astronaut.resize((400, 400)), (700, 250))
    src = tmp_path / "photos"
    save(photo, src / "two_people.jpg", quality=92)
    save(PILImage.fromarray(data.coffee()), src / "coffee.png")
    save(face_like(3), src / "already_a_crop.png")  # small: taken as a crop in auto mode

    report = import_source(project, src, ImportOptions(faces="auto"))
    assert report.imported == 3 and report.detected_faces == 2
    assert [(s.path.endswith("coffee.png"), s.reason.split(" (")[0]) for s in report.skipped] == [
        (True, "no face found")
    ]
    assert "--faces none" in report.skipped[0].reason
    with project.session() as s:
        faces = s.scalars(select(Image).where(Image.face_w.is_not(None)).order_by(Image.face_index)).all()
    assert [f.face_index for f in faces] == [0, 1]
    boxes = sorted(f.face_box for f in faces)
    # Astronaut's face is near (177, 66, 95, 95) in the 512 px original; the second copy is at (700, 250), x0.78.
    x, y, w, h = boxes[0]
    assert x < 177 + 5 and x + w > 177 + 95 - 5 and y < 66 + 5 and y + h > 66 + 95 - 5
    assert boxes[1][0] > 700
    for face in faces:
        crop = project.resolve_path(face.crop_path)
        assert crop.is_file()
        loaded = load_face(project.resolve_path(face.path), crop, face.face_box)
        assert loaded.size == (face.face_w, face.face_h)
        # Without the cache the same face is cut from the source.
        assert load_face(project.resolve_path(face.path), None, face.face_box).size == loaded.size
