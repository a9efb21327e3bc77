"""Every enumeration ganjax's configs choose from, and the parsers of its string-valued keys.

The one place each name is defined. Plain Python: `ganjax.config` validates configs against
these without importing JAX, models or steps, and the modules that implement the choices import
their names from here.
"""

from __future__ import annotations

# Data.
SUBSETS = ("none", "long_tail", "cut_class", "few_label")
LONG_TAIL_PROFILES = ("exp", "step")

# GAN models and objectives.
GAN_LOSSES = ("non_saturating", "hinge", "wgan", "least_squares")
UPSAMPLE_MODES = ("subpixel", "subpixel2x2", "transpose")
DOWNSAMPLE_MODES = ("subpixel", "strided")
DISCRIMINATOR_HEADS = ("conv3x3", "none")
NORMS = ("batch", "group", "none")
DIFF_AUGMENT_OPS = ("color", "translation", "cutout")

# Classifiers.
CLASSIFIER_MODELS = ("cnn", "resnet")
OPTIMIZERS = ("adam", "sgd")
AUGMENT_PADDINGS = ("reflect", "constant")

# Studies (ganjax.studies). A study is chosen by data.subset: "few_label" runs the few-label
# study, any other subset the long-tail study. Each strategy is a module of ganjax.studies.strategies.
LONG_TAIL_STRATEGIES = ("plain", "reweight", "oversample", "augment", "gan", "gan+augment")
FEW_LABEL_STRATEGIES = ("semi_gan", "acgan", "supervised", "supervised_augment")
STUDY_STRATEGIES = {"long_tail": LONG_TAIL_STRATEGIES, "few_label": FEW_LABEL_STRATEGIES}
STUDY_TITLES = {"long_tail": "Recognition on long-tailed data", "few_label": "Recognition with few labels"}
STRATEGY_MODULES = {
    "plain": "classic",
    "reweight": "classic",
    "oversample": "classic",
    "augment": "classic",
    "gan": "synthetic",
    "gan+augment": "synthetic",
    "semi_gan": "semi_gan",
    "acgan": "acgan",
    "supervised": "supervised",
    "supervised_augment": "supervised",
}
LONG_TAIL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "rare_class_accuracy", "ece")
FEW_LABEL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "ece")
STUDY_METRICS = {"long_tail": LONG_TAIL_METRICS, "few_label": FEW_LABEL_METRICS}
# The metric on which the best strategy is chosen, on the validation split.
SELECTION_METRIC = {"long_tail": "balanced_accuracy", "few_label": "accuracy"}
GAN_MODES = ("two_stage", "joint")
REWEIGHTS = ("effective_number", "inverse_frequency")
SYNTHETIC_FILTERS = ("none", "confidence", "discriminator")
SEMI_ARCHITECTURES = ("mlp", "conv")
SEMI_GENERATORS = ("mlp", "dcgan")


def study_of(subset: str) -> str:
    """The study that data.subset `subset` runs: "few_label" or "long_tail"."""
    return "few_label" if subset == "few_label" else "long_tail"


def parse_strategies(text: str) -> tuple[str, ...]:
    """Strategy names from a comma-separated experiment.strategies value (not checked here)."""
    return tuple(name.strip() for name in str(text).split(",") if name.strip())


def parse_diff_augment(policy: str) -> tuple[str, ...]:
    """("color", "translation", ...) from a comma-separated policy such as "color,translation,cutout"
    ("" = none); raises ValueError naming an unknown transform."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    for name in names:
        if name not in DIFF_AUGMENT_OPS:
            raise ValueError(
                f"DiffAugment transform {name!r} is unknown; gan.diffaugment is a comma-separated subset of "
                f"{DIFF_AUGMENT_OPS} (\"\" turns it off)."
            )
    return tuple(name for name in DIFF_AUGMENT_OPS if name in names)


def parse_hidden(text: str) -> tuple[int, ...]:
    """Hidden widths from "1000,500,250"; raises ValueError naming config key semi.hidden."""
    try:
        widths = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        widths = ()
    if not widths or any(width <= 0 for width in widths):
        raise ValueError(f"Config key 'semi.hidden' must list positive widths such as '1000,500,250', got {text!r}.")
    return widths
