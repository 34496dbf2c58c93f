"""Each algorithm's facts in one place, without torch: its name, the title the studio shows, a
one-line description, what it prefers where a setting is left to it (its traits) and the method
switches the studio's training form offers for it.

Everything that names algorithms reads `ALGORITHM_SPECS`: the trainer's registry of torch
factories (core/ssl/algorithms.py, checked against it when it is imported), run validation
(core/training/settings.py), the command line's --algorithm choices and help, and the training
form (app/training_form.py). Adding an algorithm is one spec here and one factory there.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AlgorithmTraits:
    """What an algorithm asks for where the user leaves a setting at None (its default)."""

    uses_unlabeled: bool = True
    balanced_sampling: bool = False  # class-balanced labeled batches (--balanced-sampling overrides)
    spatial_modules: bool = False  # DTA-SNL's feature-map modules in fine-tune mode (--local-attention overrides)
    dynamic_threshold: bool = False  # DTA's per-class thresholds (--dynamic-threshold overrides)
    instance_level: bool = False  # fuses the instance level (the memory bank) once its warm-up ends


@dataclass(frozen=True)
class Switch:
    """A boolean MethodConfig field the training form shows as a tick box (every ablation is a
    tick). A field two algorithms share is one Switch object, so the form's one box reads the same."""

    field: str
    label: str
    tooltip: str = ""


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str  # the run's `algorithm`, the command line's --algorithm value
    title: str  # as the studio shows it
    description: str  # one line: what it does (--algorithm's help, the form's tooltip)
    traits: AlgorithmTraits = field(default_factory=AlgorithmTraits)
    # The main switches, in the form's order; the rest of MethodConfig stays at its defaults
    # (the command line reaches all of it).
    switches: tuple[Switch, ...] = ()


LEAF_MODULES = Switch(
    "leaf_modules",
    "LEAF modules",
    "LEAF's gated experts, positive/negative pseudo-label sets and view consistency, added on top",
)
DYNAMIC_THRESHOLD = Switch("dynamic_threshold", "dynamic thresholds")
NEGATIVE_LEARNING = Switch("negative_learning", "negative learning")

# In the trainer's order (baselines first). sitfer's dynamic thresholds are off: on the dev split
# carved from FER2013 train (docs/benchmarks.md) a fixed threshold on the fused confidence won at
# both N. DTA-SNL is built on them.
ALGORITHM_SPECS: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        AlgorithmSpec(
            "supervised",
            "Supervised",
            "the labeled faces alone (cross-entropy): the baseline",
            AlgorithmTraits(uses_unlabeled=False),
        ),
        AlgorithmSpec(
            "fixmatch",
            "FixMatch",
            "FixMatch (Sohn et al. 2020): the weak view's prediction above a fixed threshold supervises the "
            "strong view",
            switches=(LEAF_MODULES,),
        ),
        AlgorithmSpec(
            "sitfer",
            "SIT-FER",
            "SIT-FER: semantic, text and instance pseudo-labels fused, text co-supervision, selective negative "
            "learning",
            AlgorithmTraits(instance_level=True),
            (
                Switch("use_semantic", "semantic level"),
                Switch("use_text", "text level"),
                Switch("use_instance", "instance level"),
                DYNAMIC_THRESHOLD,
                NEGATIVE_LEARNING,
                LEAF_MODULES,
            ),
        ),
        AlgorithmSpec(
            "leaf",
            "LEAF",
            "LEAF (seeds/001): EMA-teacher pseudo-labels, positive/negative class sets below the threshold, "
            "gated experts",
            switches=(
                Switch(
                    "leaf_semantic_experts",
                    "semantic experts",
                    "gated expression-relevant and -agnostic experts in front of the classifier",
                ),
                Switch("leaf_instance_experts", "instance experts", "gated experts in front of the embedding"),
                Switch(
                    "leaf_category", "category level", "ambiguous pseudo-labels as positive and negative class sets"
                ),
                Switch("leaf_consistency", "view consistency"),
                Switch("leaf_contrast", "instance contrast"),
            ),
        ),
        AlgorithmSpec(
            "dta-snl",
            "DTA-SNL",
            "DTA-SNL (seeds/002): dynamic per-class thresholds, selective negative learning, class-balanced "
            "batches; in fine-tune mode also local attention and region dropout on the feature map",
            AlgorithmTraits(balanced_sampling=True, spatial_modules=True, dynamic_threshold=True),
            (DYNAMIC_THRESHOLD, NEGATIVE_LEARNING, Switch("teacher_pseudo_labels", "EMA teacher labels")),
        ),
    )
}
ALGORITHM_NAMES = tuple(ALGORITHM_SPECS)
DEFAULT_ALGORITHM = "sitfer"


def algorithm_spec(name: str) -> AlgorithmSpec:
    try:
        return ALGORITHM_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHM_NAMES)}") from None


def algorithm_traits(name: str) -> AlgorithmTraits:
    return algorithm_spec(name).traits


def algorithm_help() -> str:
    """--algorithm's help: one 'name: description' per algorithm."""
    return "; ".join(f"{spec.name}: {spec.description}" for spec in ALGORITHM_SPECS.values())
