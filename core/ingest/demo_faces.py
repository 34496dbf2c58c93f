"""Procedurally drawn demo faces for the seven expressions, so the studio runs without downloaded data.

Each expression is a vector of facial-action parameters (brows, lids, mouth, wrinkles). A face is
its class prototype scaled by a random intensity and jittered, sometimes blended with a commonly
confused class, then drawn with Pillow at supersampled resolution over a random identity (face
shape, skin tone, hair, pose, lighting, noise), so that a model has to learn the expression and
not the rendering.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core.classes import class_names

# Drawing happens at SUPERSAMPLE x the output size and is downsampled with LANCZOS for antialiasing.
SUPERSAMPLE = 3

# Facial-action parameters. 0 is the neutral face; signed ones go both ways, the rest are >= 0.
PARAMS = (
    "brow_raise",  # + brows up (surprise/fear), - lowered (anger/disgust)
    "brow_inner",  # + inner ends up (worried), - inner ends down (angry V)
    "brow_arch",  # + rounder arch
    "eye_open",  # + wide open, - narrowed
    "squint",  # lower lids pushed up into smiling arcs
    "droop",  # upper lid lowered at the outer corner (sad)
    "glare",  # upper lid lowered at the inner corner (angry stare)
    "mouth_curve",  # + smile (corners up), - frown
    "mouth_open",  # jaw drop
    "mouth_width",  # + corners pulled outwards, - puckered / narrow
    "teeth",  # how much teeth show in the opening
    "sneer",  # one-sided upper-lip raise
    "nose_wrinkle",  # wrinkles across the nose bridge, flared nostrils
    "cheek",  # raised cheeks: deeper nasolabial folds, crease under the eyes
    "lip_press",  # lips pressed thin
)
_P = {name: i for i, name in enumerate(PARAMS)}
_SIGNED = {"brow_raise", "brow_inner", "brow_arch", "eye_open", "mouth_curve", "mouth_width"}

# Class prototypes, as alternative "modes" (probability, parameters) because people show the
# same expression in more than one way (closed vs. open smile, pressed lips vs. bared teeth).
_PROTOTYPES: dict[str, list[tuple[float, dict[str, float]]]] = {
    "surprise": [
        (1.0, dict(brow_raise=1.0, brow_arch=0.9, eye_open=1.0, mouth_open=1.0, mouth_width=-0.75)),
    ],
    "fear": [
        (
            0.5,
            dict(
                brow_raise=0.6,
                brow_inner=1.0,
                brow_arch=-0.3,
                eye_open=0.9,
                mouth_open=0.3,
                mouth_width=0.9,
                mouth_curve=-0.35,
                teeth=0.9,
            ),
        ),
        (
            0.5,
            dict(
                brow_raise=0.6,
                brow_inner=1.0,
                brow_arch=-0.3,
                eye_open=0.9,
                mouth_open=0.12,
                mouth_width=0.8,
                mouth_curve=-0.45,
                lip_press=0.4,
            ),
        ),
    ],
    "disgust": [
        (
            1.0,
            dict(
                brow_raise=-0.45,
                brow_inner=-0.15,
                eye_open=-0.45,
                nose_wrinkle=1.1,
                sneer=1.0,
                mouth_curve=-0.5,
                cheek=0.5,
                teeth=0.8,
            ),
        ),
    ],
    "happiness": [
        (
            0.5,
            dict(mouth_curve=1.0, mouth_width=0.45, mouth_open=0.5, teeth=1.0, squint=0.85, cheek=1.0, brow_raise=0.1),
        ),
        (0.5, dict(mouth_curve=1.0, mouth_width=0.4, squint=0.75, cheek=0.9, brow_raise=0.1)),
    ],
    "sadness": [
        (
            1.0,
            dict(
                brow_inner=0.8,
                brow_arch=-0.2,
                droop=0.9,
                eye_open=-0.25,
                mouth_curve=-1.0,
                mouth_width=-0.1,
                lip_press=0.2,
            ),
        ),
    ],
    "anger": [
        (
            0.75,
            dict(
                brow_raise=-0.8,
                brow_inner=-1.1,
                eye_open=-0.3,
                glare=1.0,
                lip_press=1.0,
                mouth_curve=-0.35,
                mouth_width=-0.35,
            ),
        ),
        (
            0.25,
            dict(
                brow_raise=-0.75,
                brow_inner=-1.0,
                eye_open=-0.2,
                glare=0.9,
                mouth_open=0.3,
                teeth=1.4,
                mouth_width=0.35,
                mouth_curve=-0.3,
                nose_wrinkle=0.3,
            ),
        ),
    ],
    "neutral": [
        (1.0, dict()),
    ],
}

# Commonly confused partners used for ambiguous blends (neutral is confused with both sadness and
# happiness, so it picks one at random).
_BLEND_PARTNERS: dict[str, tuple[str, ...]] = {
    "surprise": ("fear",),
    "fear": ("surprise",),
    "disgust": ("anger",),
    "anger": ("disgust",),
    "sadness": ("neutral",),
    "happiness": ("neutral",),
    "neutral": ("sadness", "happiness"),
}
BLEND_WEIGHT_RANGE = (0.55, 0.7)  # weight of the true class in a blend, so it stays dominant

INTENSITY_RANGE = (0.75, 1.2)  # scale of the deviation from neutral
JITTER_SD = 0.12  # per-parameter noise around the (scaled) prototype

_SKIN_LIGHT = np.array([246.0, 214.0, 190.0])
_SKIN_DARK = np.array([88.0, 56.0, 38.0])
_HAIR_COLOURS = np.array(
    [
        [25, 20, 18],
        [45, 32, 24],
        [80, 55, 35],
        [120, 85, 50],
        [170, 130, 80],
        [210, 180, 120],
        [140, 60, 30],
        [150, 150, 150],
        [60, 60, 65],
    ],
    dtype=float,
)
_IRIS_COLOURS = np.array([[70, 45, 25], [100, 70, 40], [60, 90, 130], [70, 100, 70], [40, 30, 25]], dtype=float)


@dataclass(frozen=True)
class DemoFace:
    label: str  # canonical class name
    blend_with: str | None  # partner class if an ambiguous blend, else None
    image: Image.Image  # RGB, size x size


def _check_label(label: str) -> None:
    if label not in class_names():
        raise ValueError(f"unknown expression {label!r}; expected one of {', '.join(class_names())}")
    if label not in _PROTOTYPES:
        raise ValueError(f"no demo-face prototype for class {label!r}")


def _prototype(label: str, rng: np.random.Generator) -> np.ndarray:
    modes = _PROTOTYPES[label]
    probs = np.array([m[0] for m in modes])
    values = modes[int(rng.choice(len(modes), p=probs / probs.sum()))][1]
    vec = np.zeros(len(PARAMS))
    for name, v in values.items():
        vec[_P[name]] = v
    return vec


def _expression(label: str, rng: np.random.Generator, blend_with: str | None, blend_weight: float) -> dict[str, float]:
    vec = _prototype(label, rng)
    if blend_with is not None:
        w = float(blend_weight)
        vec = w * vec + (1.0 - w) * _prototype(blend_with, rng)
    vec = vec * rng.uniform(*INTENSITY_RANGE) + rng.normal(0.0, JITTER_SD, len(PARAMS))
    out = {}
    for name, v in zip(PARAMS, vec):
        out[name] = float(np.clip(v, -1.3, 1.5)) if name in _SIGNED else float(np.clip(v, 0.0, 1.5))
    return out


def _lerp(c0, c1, t: float) -> tuple[int, int, int]:
    t = min(max(t, 0.0), 1.0)
    red, green, blue = (int(round(a + (b - a) * t)) for a, b in zip(c0, c1))
    return red, green, blue


def _w(width: float) -> int:
    # Line widths are in supersampled pixels; round rather than truncate so thin lines keep weight.
    return max(1, int(round(width)))


def _pts(xs: np.ndarray, ys: np.ndarray) -> list[float]:
    return np.column_stack([xs, ys]).ravel().tolist()


def _band(xs: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> list[float] | None:
    """Polygon between two curves over the same x, or None where they do not overlap."""
    keep = bottom > top
    if keep.sum() < 2:
        return None
    xs, top, bottom = xs[keep], top[keep], bottom[keep]
    return _pts(np.concatenate([xs, xs[::-1]]), np.concatenate([top, bottom[::-1]]))


def _clipped_disc(cx: float, cy: float, r: float, upper_fn, lower_fn, n: int = 14) -> list[float] | None:
    """A disc clipped to the region between the eyelid curves (so irises tuck under the lids)."""
    xs = np.linspace(cx - r * 0.999, cx + r * 0.999, n)
    half = np.sqrt(np.maximum(r * r - (xs - cx) ** 2, 0.0))
    top = np.maximum(cy - half, upper_fn(xs))
    bottom = np.minimum(cy + half, lower_fn(xs))
    return _band(xs, top, bottom)


def _bezier(p0, p1, p2, n: int = 9) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 1.0, n)
    x = (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t**2 * p2[0]
    y = (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t**2 * p2[1]
    return x, y


def _identity(rng: np.random.Generator, W: int, pad: int = 0) -> dict:
    """Everything about a face that is not its expression; coordinates are offset by `pad`."""
    a = W * rng.uniform(0.355, 0.385)  # tight crop, like aligned FER data sets
    skin_t = rng.beta(1.6, 1.6)
    skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * skin_t + rng.normal(0, 6, 3) + np.array([0, 0, -4]) * rng.random()
    skin = np.clip(skin, 30, 255)
    hair = np.clip(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] + rng.normal(0, 8, 3), 0, 255)
    bg = np.clip(rng.uniform(40, 225, 3) * 0.6 + rng.uniform(40, 225) * 0.4, 0, 255)
    cloth = np.clip(rng.uniform(20, 230, 3), 0, 255)
    return dict(
        a=a,
        b=a * rng.uniform(1.21, 1.29),
        cx=pad + W * (0.5 + rng.uniform(-0.01, 0.01)),
        cy=pad + W * (0.5 + rng.uniform(-0.01, 0.01)),
        skin=tuple(int(v) for v in skin),
        hair=tuple(int(v) for v in hair),
        bg=tuple(int(v) for v in bg),
        cloth=tuple(int(v) for v in cloth),
        brow_col=tuple(int(v) for v in np.minimum(hair, skin) * rng.uniform(0.45, 0.75)),
        iris=tuple(int(v) for v in _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]),
        hair_style=int(rng.integers(3)),
        fringe=rng.uniform(0.52, 0.68),  # how far down the forehead the hairline comes (in b units)
        eye_y=rng.uniform(0.10, 0.16),
        eye_dx=rng.uniform(0.36, 0.42),
        ew=rng.uniform(0.20, 0.23),
        eh=rng.uniform(0.10, 0.115),
        iris_r=rng.uniform(0.95, 1.1),
        gaze=rng.normal(0, 0.12),
        brow_th=rng.uniform(0.055, 0.075),
        brow_gap=rng.uniform(0.19, 0.23),
        nose_y=rng.uniform(0.16, 0.22),
        mouth_y=rng.uniform(0.43, 0.49),
        mw=rng.uniform(0.36, 0.42),
        lip_up=rng.uniform(0.030, 0.045),
        lip_lo=rng.uniform(0.040, 0.060),
        lip_tint=rng.uniform(0.2, 0.45),
        sneer_side=float(rng.choice([-1.0, 1.0])),
        light=rng.uniform(-1.0, 1.0),
    )


def _draw_eye(d: ImageDraw.ImageDraw, f: dict, e: dict, side: float) -> float:
    """Draws one eye (side -1 = viewer's left) and returns the y of its top edge."""
    a, eh = f["a"], f["eh"] * f["a"]
    ex = f["cx"] + side * f["eye_dx"] * a
    ey = f["cy"] - f["eye_y"] * f["b"]
    ew = f["ew"] * a
    n = 13
    s = np.linspace(0.0, 1.0, n)  # 0 = inner corner, 1 = outer corner
    xs = ex + side * ew * (2 * s - 1)
    prof = np.sin(np.pi * s) ** 0.85
    hu = eh * max(1.0 + 0.8 * e["eye_open"], 0.25) * (1.0 - 0.3 * e["squint"])
    hl = eh * max(0.75 * (1.0 + 0.45 * e["eye_open"]), 0.2)
    corner_tilt = eh * (0.35 * e["droop"] - 0.15 * e["glare"])  # sad eyes slope down outwards
    base = ey + corner_tilt * (s - 0.5)
    upper = base - hu * prof
    upper += hu * 1.3 * (e["droop"] * s + e["glare"] * (1 - s)) * np.sin(np.pi * s) * 0.6
    lower = base + hl * prof * (1.0 - 0.3 * e["cheek"])
    squinted = base - hu * 0.7 * prof
    sq = min(e["squint"], 1.0)
    lower = (1 - sq) * lower + sq * squinted
    lower = np.maximum(lower, upper + 0.04 * eh)

    skin = f["skin"]
    dark = (20, 14, 12)
    # Eyelid crease above the lid, which a raised cheek or a wide stare smooths out.
    crease = upper - eh * (0.55 + 0.2 * max(-e["eye_open"], 0)) * prof
    d.line(_pts(xs, crease), fill=_lerp(skin, dark, 0.22), width=_w(0.022 * a))
    poly = _band(xs, upper, lower)
    if poly:
        d.polygon(poly, fill=(238, 236, 230))
        order = np.argsort(xs)
        xo, uo, lo = xs[order], upper[order], lower[order]

        def upper_fn(x):
            return np.interp(x, xo, uo)

        def lower_fn(x):
            return np.interp(x, xo, lo)

        r = eh * f["iris_r"]
        icx = ex + f["gaze"] * ew * 0.4
        icy = ey + 0.1 * eh
        iris = _clipped_disc(icx, icy, r, upper_fn, lower_fn)
        if iris:
            d.polygon(iris, fill=f["iris"])
        pupil = _clipped_disc(icx, icy, r * 0.5, upper_fn, lower_fn, n=9)
        if pupil:
            d.polygon(pupil, fill=(10, 8, 8))
    d.line(_pts(xs, upper), fill=dark, width=_w(0.055 * a), joint="curve")
    d.line(_pts(xs, lower), fill=_lerp(skin, dark, 0.45), width=_w(0.025 * a))
    if e["cheek"] > 0.2:  # crease under the eye pushed up by the cheek
        d.line(
            _pts(xs[2:-2], (lower + eh * 0.7 * prof)[2:-2]),
            fill=_lerp(skin, dark, 0.25 * min(e["cheek"], 1.2)),
            width=_w(0.025 * a),
        )
    return float(upper.min())


def _draw_brow(d: ImageDraw.ImageDraw, f: dict, e: dict, side: float, eye_top: float) -> float:
    a = f["a"]
    ex = f["cx"] + side * f["eye_dx"] * a
    ey = f["cy"] - f["eye_y"] * f["b"]
    ew = f["ew"] * a
    base = ey - f["brow_gap"] * a - 0.15 * a * e["brow_raise"]
    knit = 0.04 * a * min(e["brow_inner"], 0.0)  # negative inner = pulled together
    x_in = ex - side * (ew * 0.95 + knit)
    x_out = ex + side * ew * 1.2
    y_in = base - 0.13 * a * e["brow_inner"]
    y_out = base + 0.015 * a + 0.03 * a * max(e["brow_inner"], 0.0)
    mid = ((x_in + x_out) / 2, (y_in + y_out) / 2 - a * (0.05 + 0.045 * e["brow_arch"]))
    xs, ys = _bezier((x_in, y_in), mid, (x_out, y_out))
    # Brows never come below the upper lid.
    ys = np.minimum(ys, eye_top - 0.03 * a)
    th = f["brow_th"] * a * np.linspace(1.0, 0.55, len(xs))
    d.polygon(
        _pts(np.concatenate([xs, xs[::-1]]), np.concatenate([ys - th / 2, (ys + th / 2)[::-1]])), fill=f["brow_col"]
    )
    return float(min(y_in, ys.min()))


def _draw_mouth(d: ImageDraw.ImageDraw, f: dict, e: dict) -> tuple[tuple[float, float], tuple[float, float]]:
    """Draws lips, opening and teeth; returns the two corner points."""
    a = f["a"]
    mx = f["cx"]
    my = f["cy"] + f["mouth_y"] * f["b"]
    mw = f["mw"] * a * (1.0 + 0.3 * e["mouth_width"]) * (1.0 - 0.1 * e["lip_press"])
    c = e["mouth_curve"]
    n = 17
    s = np.linspace(0.0, 1.0, n)
    xs = mx - mw + 2 * mw * s
    side_s = 0.5 + 0.5 * f["sneer_side"]  # 0 = left end, 1 = right end
    sneer_corner = 0.04 * a * e["sneer"]
    y_left = my - c * a * 0.13 - (sneer_corner if side_s == 0 else 0.0)
    y_right = my - c * a * 0.13 - (sneer_corner if side_s == 1 else 0.0)
    sin = np.sin(np.pi * s)
    seam = y_left + (y_right - y_left) * s + c * a * 0.09 * sin
    op = e["mouth_open"]
    open_prof = sin**0.6
    bump = np.exp(-(((s - (0.3 if side_s == 0 else 0.7)) / 0.17) ** 2)) * sin**0.5
    # The sneer lifts the whole upper lip a little and one side of it a lot.
    upper = seam - op * a * 0.07 * open_prof - e["sneer"] * a * (0.035 * sin**0.8 + 0.07 * bump)
    lower = seam + op * a * 0.25 * open_prof
    press = min(e["lip_press"], 1.0)
    lip_prof = sin**0.5
    upper_lip = upper - f["lip_up"] * a * (1.0 - 0.75 * press) * lip_prof - 0.012 * a * lip_prof
    lower_lip = lower + f["lip_lo"] * a * (1.0 - 0.75 * press) * lip_prof + 0.012 * a * lip_prof

    skin = f["skin"]
    dark = (20, 14, 12)
    lip_col = _lerp(_lerp(skin, (165, 60, 70), f["lip_tint"]), dark, 0.12)
    d.polygon(_pts(np.concatenate([xs, xs[::-1]]), np.concatenate([upper_lip, lower_lip[::-1]])), fill=lip_col)
    opening = _band(xs, upper, lower)
    line_w = _w(0.04 * a)
    if opening:
        d.polygon(opening, fill=(55, 18, 22))
        teeth = min(e["teeth"], 1.5)
        if teeth > 0.15:
            tooth_h = teeth * a * 0.07
            top_teeth = _band(xs, upper, np.minimum(upper + tooth_h, lower))
            if top_teeth:
                d.polygon(top_teeth, fill=(236, 232, 220))
            if teeth > 0.8:  # clenched or wide: lower teeth too
                bottom_teeth = _band(xs, np.maximum(lower - tooth_h * 0.6, upper), lower)
                if bottom_teeth:
                    d.polygon(bottom_teeth, fill=(222, 218, 206))
        d.line(_pts(xs, lower), fill=_lerp(lip_col, dark, 0.5), width=line_w)
    d.line(_pts(xs, upper), fill=_lerp(lip_col, dark, 0.7), width=line_w, joint="curve")
    if c > 0.3:  # smile dimples at the corners
        for x, y, sd in ((xs[0], seam[0], -1), (xs[-1], seam[-1], 1)):
            r = 0.02 * a
            d.line(
                [x + sd * r, y - 2 * r, x + sd * 1.6 * r, y + r],
                fill=_lerp(skin, dark, 0.3 * min(c, 1.0)),
                width=line_w,
            )
    return (xs[0], seam[0]), (xs[-1], seam[-1])


def _draw_face(e: dict, f: dict, W: int) -> Image.Image:
    img = Image.new("RGB", (W, W), f["bg"])
    d = ImageDraw.Draw(img)
    a, b, cx, cy = f["a"], f["b"], f["cx"], f["cy"]
    skin, hair = f["skin"], f["hair"]
    dark = (20, 14, 12)
    shade = _lerp(skin, dark, 0.22)

    if f["hair_style"] == 2:  # long hair behind the head
        d.rounded_rectangle([cx - a * 1.25, cy - b * 1.1, cx + a * 1.25, cy + b * 1.25], radius=a * 0.6, fill=hair)
    d.rectangle([cx - a * 0.42, cy + b * 0.5, cx + a * 0.42, W], fill=shade)  # neck
    d.ellipse([cx - a * 2.0, cy + b * 1.08, cx + a * 2.0, cy + b * 1.08 + a * 2.2], fill=f["cloth"])
    for sd in (-1, 1):  # ears
        d.ellipse(
            [cx + sd * a * 0.96 - a * 0.12, cy - b * 0.2, cx + sd * a * 0.96 + a * 0.12, cy + b * 0.22], fill=shade
        )
    if f["hair_style"] != 1:  # hair volume above the head (style 1 is close-cropped)
        d.ellipse([cx - a * 1.1, cy - b * 1.14, cx + a * 1.1, cy + b * 0.2], fill=hair)
    # Face with a darker rim on the side away from the light, for some volume.
    d.ellipse([cx - a, cy - b, cx + a, cy + b], fill=shade)
    lx = f["light"] * a * 0.06
    d.ellipse([cx - a * 0.93 + lx, cy - b * 0.95, cx + a * 0.93 + lx, cy + b * 0.93], fill=skin)
    # Fringe: the top of the face ellipse covered down to the hairline.
    # (A polygon, not ImageDraw.chord, which fills stray bands for some float boxes.)
    half = math.acos(min(f["fringe"], 0.99))
    theta = np.linspace(1.5 * np.pi - half, 1.5 * np.pi + half, 24)
    d.polygon(
        _pts(cx + a * 1.02 * np.cos(theta), cy + b * 1.02 * np.sin(theta)),
        fill=hair if f["hair_style"] != 1 else _lerp(hair, skin, 0.35),
    )

    eye_tops = [_draw_eye(d, f, e, sd) for sd in (-1.0, 1.0)]
    brow_tops = [_draw_brow(d, f, e, sd, et) for sd, et in zip((-1.0, 1.0), eye_tops)]
    line_w = _w(0.028 * a)
    hairline = cy - b * f["fringe"]

    # Forehead lines appear when the brows are lifted, more so with inner ends up (fear).
    fw = max(e["brow_raise"] - 0.35, 0.0) + 0.5 * max(e["brow_inner"] - 0.35, 0.0)
    if fw > 0.05:
        for k, y in enumerate((min(brow_tops) - 0.07 * a, min(brow_tops) - 0.14 * a)):
            if y > hairline + 0.02 * a:
                xs, ys = _bezier((cx - 0.38 * a, y + 0.02 * a), (cx, y - 0.03 * a), (cx + 0.38 * a, y + 0.02 * a))
                d.line(_pts(xs, ys), fill=_lerp(skin, dark, 0.35 * min(fw, 1.0) * (1 - 0.3 * k)), width=line_w)
    # Vertical frown lines between knitted brows.
    gl = max(-e["brow_inner"] - 0.3, 0.0)
    if gl > 0.05:
        ey = cy - f["eye_y"] * b
        for sd in (-1, 1):
            x = cx + sd * 0.05 * a
            d.line(
                [x, ey - 0.22 * a, x + sd * 0.01 * a, ey - 0.08 * a],
                fill=_lerp(skin, dark, 0.4 * min(gl, 1.0)),
                width=line_w,
            )

    # Nose; wrinkling lifts the nostrils and creases the bridge.
    wr = min(e["nose_wrinkle"], 1.3)
    ny = cy + f["nose_y"] * b - 0.03 * a * wr
    ey = cy - f["eye_y"] * b
    d.line(
        [cx - 0.06 * a * f["light"], ey + 0.05 * a, cx - 0.09 * a * f["light"] - 0.02 * a, ny - 0.05 * a],
        fill=_lerp(skin, dark, 0.18),
        width=line_w,
    )
    for sd in (-1, 1):
        nx = cx + sd * 0.085 * a
        d.ellipse([nx - 0.04 * a, ny - 0.02 * a, nx + 0.04 * a, ny + 0.025 * a], fill=_lerp(skin, dark, 0.6))
    xs, ys = _bezier((cx - 0.17 * a, ny - 0.03 * a), (cx, ny + 0.1 * a), (cx + 0.17 * a, ny - 0.03 * a))
    d.line(_pts(xs, ys), fill=_lerp(skin, dark, 0.3), width=line_w)
    if wr > 0.2:
        for k in range(3):
            y = ey + (0.02 + 0.06 * k) * a
            xs, ys = _bezier((cx - 0.1 * a, y + 0.02 * a), (cx, y - 0.025 * a), (cx + 0.1 * a, y + 0.02 * a), n=5)
            d.line(_pts(xs, ys), fill=_lerp(skin, dark, 0.45 * min(wr, 1.0)), width=line_w)

    (lx0, ly0), (rx0, ry0) = _draw_mouth(d, f, e)
    # Nasolabial folds from the nostril wings to just outside the mouth corners.
    for sd, (mx_, my_) in ((-1, (lx0, ly0)), (1, (rx0, ry0))):
        depth = 0.12 + 0.45 * e["cheek"] + 0.2 * max(e["mouth_width"], 0.0) + 0.2 * wr
        if sd == f["sneer_side"]:
            depth += 0.45 * e["sneer"]
        p0 = (cx + sd * 0.17 * a, ny - 0.04 * a)
        p2 = (mx_ + sd * 0.07 * a, my_ + 0.05 * a)
        p1 = (p0[0] + sd * 0.12 * a, (p0[1] + p2[1]) / 2)
        xs, ys = _bezier(p0, p1, p2, n=7)
        d.line(_pts(xs, ys), fill=_lerp(skin, dark, 0.35 * min(depth, 1.0)), width=line_w)
    return img


def render_face(
    label: str, rng: np.random.Generator, size: int = 64, blend_with: str | None = None, blend_weight: float = 1.0
) -> Image.Image:
    """One random face showing `label` (optionally blended with `blend_with`), RGB size x size."""
    _check_label(label)
    if blend_with is not None:
        _check_label(blend_with)
    if not 0.0 <= blend_weight <= 1.0:
        raise ValueError(f"blend_weight must be in [0, 1], got {blend_weight}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    W = size * SUPERSAMPLE
    # Draw on a padded canvas so rotating never pulls background in over the neck and shoulders.
    pad = W // 5
    expr = _expression(label, rng, blend_with, blend_weight)
    face = _identity(rng, W, pad)
    img = _draw_face(expr, face, W + 2 * pad)
    angle = float(np.clip(rng.normal(0.0, 5.0), -15.0, 15.0))  # mostly near-upright, as after face alignment
    # Tilt about the nose, between eyes and mouth, as a head roll roughly does. NEAREST is enough:
    # the supersampled image is LANCZOS-downsampled right after, and it is ~40x faster than BICUBIC.
    pivot = (face["cx"], face["cy"] + face["b"] * face["nose_y"])
    img = img.rotate(angle, resample=Image.Resampling.NEAREST, center=pivot, fillcolor=face["bg"])
    img = img.resize((size, size), Image.Resampling.LANCZOS, box=(pad, pad, pad + W, pad + W))
    if rng.random() < 0.25:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8) * size / 64))

    # Photometric variation: directional light, exposure/contrast, sometimes grayscale, sensor noise.
    arr = np.asarray(img, dtype=np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    gain = 1.0 + rng.uniform(0.0, 0.3) * (np.cos(theta) * ramp[None, :] + np.sin(theta) * ramp[:, None])
    arr = arr * gain[:, :, None]
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(0.8, 1.15) + mean * rng.uniform(0.8, 1.15)
    if rng.random() < 0.35:
        arr = np.repeat((arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None], 3, axis=2)
    arr = arr + rng.normal(0.0, rng.uniform(1.0, 7.0), arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


def _label_seed(label: str) -> int:
    # A stable hash of the name, so a class's faces don't change if classes.json is reordered.
    return zlib.crc32(label.encode("utf-8"))


def _seed_word(seed: int) -> int:
    return int(seed) % (1 << 64)  # SeedSequence wants non-negative entropy


def generate_faces(label: str, count: int, seed: int, size: int = 64, blend_fraction: float = 0.12) -> list[DemoFace]:
    """`count` faces of `label`; about `blend_fraction` of them are ambiguous blends with a confusable class.

    Each face has its own generator keyed by (seed, label, index), so face i is the same person and
    expression whatever `count` is, and at every `size`.
    """
    _check_label(label)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 0.0 <= blend_fraction <= 1.0:
        raise ValueError(f"blend_fraction must be in [0, 1], got {blend_fraction}")
    partners = _BLEND_PARTNERS.get(label, ())
    faces = []
    for i in range(count):
        rng = np.random.default_rng([_seed_word(seed), _label_seed(label), i])
        blend_with, weight = None, 1.0
        if partners and rng.random() < blend_fraction:
            blend_with = partners[int(rng.integers(len(partners)))]
            weight = rng.uniform(*BLEND_WEIGHT_RANGE)
        faces.append(DemoFace(label, blend_with, render_face(label, rng, size, blend_with, weight)))
    return faces


def _split_seed(seed: int, split: int) -> int:
    return int(np.random.SeedSequence([_seed_word(seed), split]).generate_state(1, np.uint64)[0])


def write_demo_folders(
    out_dir: Path, seed: int = 0, train_per_class: int = 60, val_per_class: int = 20, size: int = 64
) -> dict[str, Path]:
    """Writes out_dir/{train,val}/<class>/<class>_<i>.png; train and val come from different seeds."""
    out_dir = Path(out_dir)
    result = {}
    for split_index, (split, count) in enumerate((("train", train_per_class), ("val", val_per_class))):
        split_dir = out_dir / split
        split_seed = _split_seed(seed, split_index + 1)
        for label in class_names():
            class_dir = split_dir / label
            class_dir.mkdir(parents=True, exist_ok=True)
            for i, face in enumerate(generate_faces(label, count, split_seed, size)):
                face.image.save(class_dir / f"{label}_{i:04d}.png")
        result[split] = split_dir
    return result
