"""Which features of the offline encoder's ImageNet EfficientNet-Lite0 a head should train on.

Linear probes (standardised features, L2-regularised logistic regression) on candidate poolings
of the network's maps, on a dev split of FER2013 *train* only: the probes train on 25 and 100
faces per class and on all of 5,000 train faces, and are scored on 2,000 other train faces.
Val (the reported split) is never read, so choosing the encoder's features here does not leak
into any reported number.

    python -m bench.feature_probe              # writes docs/benchmarks.md ("feature-probe")
    python -m bench.feature_probe --no-write
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.report import SHARED_DATA, machine_summary, saved_or_run, write_section
from core.encoders.base import Preprocessor
from core.encoders.offline import INPUT_SIZE, MEAN, STD, load_network, weights_path

# name -> (block index after which the map is taken, or "head" for the last 1280-channel map; grid)
CANDIDATES: dict[str, tuple[int | str, int]] = {
    "last layer (1280 ch), global average": ("head", 1),
    "last layer (1280 ch), 2x2 grid": ("head", 2),
    "block 15 (320 ch), 2x2 grid": (15, 2),
    "block 14 (192 ch), global average": (14, 1),
    "block 14 (192 ch), 2x2 grid": (14, 2),
    "block 14 (192 ch), 3x3 grid": (14, 3),
    "block 10 (112 ch), 2x2 grid": (10, 2),
    "block 10 (112 ch), 3x3 grid": (10, 3),
}
CURRENT = "block 10 (112 ch), 3x3 grid"  # the offline encoder's features (core/encoders/offline.py)
FORMER = "last layer (1280 ch), global average"  # its features before FEATURE_VERSION 2


def dev_split(root: Path, train_faces: int, dev_faces: int, seed: int) -> tuple[list, list]:
    items = [
        (path, c)
        for c, name in enumerate(sorted(p.name for p in (root / "train").iterdir()))
        for path in sorted((root / "train" / name).iterdir())
    ]
    order = np.random.default_rng(seed).permutation(len(items))[: train_faces + dev_faces]
    picked = [items[i] for i in order]
    return picked[:train_faces], picked[train_faces:]


@torch.no_grad()
def candidate_features(net, items: list, batch: int = 128) -> dict[str, np.ndarray]:
    preprocess = Preprocessor(INPUT_SIZE, MEAN, STD)  # the encoder's own: what the product feeds the network
    wanted = {block for block, _ in CANDIDATES.values()}
    out: dict[str, list[np.ndarray]] = {name: [] for name in CANDIDATES}
    for start in range(0, len(items), batch):
        x = preprocess([Image.open(path).convert("RGB") for path, _ in items[start : start + batch]])
        maps: dict[int | str, torch.Tensor] = {}  # block index, or "head"
        h = net._swish(net._bn0(net._conv_stem(x)))
        for i, block in enumerate(net._blocks):
            h = block(h)
            if i in wanted:
                maps[i] = h
        maps["head"] = net._swish(net._bn1(net._conv_head(h)))
        for name, (block, grid) in CANDIDATES.items():
            out[name].append(torch.nn.functional.adaptive_avg_pool2d(maps[block], grid).flatten(1).numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}


def probe(x_train, y_train, x_dev, y_dev, c: float) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(C=c, max_iter=300).fit(scaler.transform(x_train), y_train)
    return float((model.predict(scaler.transform(x_dev)) == y_dev).mean())


def run_benchmark(args, checkpoint=None) -> dict:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    torch.set_num_threads(args.threads)
    root = SHARED_DATA / "fer2013"
    if not (root / "train").is_dir():
        raise SystemExit(f"skipped: FER2013 not found at {root} (set FER_SHARED_DATA)")
    train, dev = dev_split(root, args.train_faces, args.dev_faces, args.seed)
    net = load_network(weights_path()).eval()
    started = time.perf_counter()
    x_train, x_dev = candidate_features(net, train), candidate_features(net, dev)
    seconds = time.perf_counter() - started
    y_train = np.array([c for _, c in train])
    y_dev = np.array([c for _, c in dev])
    rows: list[dict] = []
    results = {
        "settings": {
            "train_faces": len(train),
            "dev_faces": len(dev),
            "seed": args.seed,
            "input_size": INPUT_SIZE,
            "machine": machine_summary(),
            "feature_seconds": seconds,
            "c_small": 0.05,
            "c_all": 0.5,
        },
        "rows": rows,
    }
    for per_class in (25, 100, None):
        picked = (
            np.concatenate([np.flatnonzero(y_train == c)[:per_class] for c in range(7)])
            if per_class
            else np.arange(len(y_train))
        )
        c = 0.05 if per_class else 0.5  # stronger regularisation with few labels
        accuracy = {name: probe(x_train[name][picked], y_train[picked], x_dev[name], y_dev, c) for name in CANDIDATES}
        row = {"labels": per_class or "all", "accuracy": accuracy}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if checkpoint:
            checkpoint(results)
    return results


def render(results: dict) -> str:
    s = results["settings"]
    rows = results["rows"]
    header = (
        "| features (pooling of the map) | dim | "
        + " | ".join(f"{r['labels']} per class" if r["labels"] != "all" else f"all {s['train_faces']:,}" for r in rows)
        + " |"
    )
    dims = {"head": 1280, 15: 320, 14: 192, 10: 112}
    lines = [
        "## Which features of the offline encoder (FER2013 train, dev split)",
        "",
        f"`python -m bench.feature_probe` - logistic-regression probes (standardised features; C {s['c_small']} "
        f"with 25 or 100 labels per class, {s['c_all']} with all) trained on {s['train_faces']:,} FER2013 train "
        f"faces and scored on {s['dev_faces']:,} other train faces (seed {s['seed']}); val is never read. "
        f"ImageNet EfficientNet-Lite0 at {s['input_size']} px; the block number counts MBConv blocks from 0 "
        f"(16 in all). Machine: {s['machine']}; features of all candidates in {s['feature_seconds']:.0f} s.",
        "",
        "**Reading.** ImageNet's last layer, averaged over the whole face (the encoder's features until "
        "this change), is the weakest of the candidates at every label count. Keeping where things are "
        "(a grid instead of one average) and taking an earlier, less ImageNet-specific map both help. "
        f"`{CURRENT}` is best with 25 and 100 labels per class (the studio's range: a few dozen to a few "
        "hundred labels per class), though not with all 5,000 labels, where block 14's plain average leads; "
        "the offline encoder now gives these features: the first 11 blocks only, so it is also cheaper. Every benchmark below that names "
        '"first 11 of 16 blocks" in its encoder line ran on them; older sections name "1280-d".',
        "",
        header,
        "|---|---|" + "---|" * len(rows),
    ]
    for name, (block, grid) in CANDIDATES.items():
        mark = " (the encoder's features)" if name == CURRENT else (" (its features before)" if name == FORMER else "")
        cells = " | ".join(f"{r['accuracy'][name] * 100:.1f}" for r in rows)
        lines.append(f"| {name}{mark} | {dims[block] * grid * grid} | {cells} |")
    lines += ["", "Accuracy in % on the dev faces."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-faces", type=int, default=5000)
    parser.add_argument("--dev-faces", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--render", type=Path, help="render saved results into docs/benchmarks.md and exit")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    results = saved_or_run(args, run_benchmark)
    body = render(results)
    print(body)
    if not args.no_write:
        write_section("feature-probe", body, rendered_only=bool(args.render))
    return 0


if __name__ == "__main__":
    sys.exit(main())
