"""Every enumeration ganjax's configs choose from, and the parsers of its string-valued keys.

The one place each name is defined. Plain Python: `ganjax.config` validates configs against
these without importing JAX, models or steps, and the modules that implement the choices import
their names from here.
"""

from __future__ import annotations

# Data.
SUBSETS = ("none", "long_tail", "cut_class", "few_label", "balanced")
LONG_TAIL_PROFILES = ("exp", "step")

# GAN models and objectives.
GAN_LOSSES = ("non_saturating", "hinge", "wgan", "least_squares")
# "dcgan": ganjax.models.Generator and Discriminator; "seed_mlp": the seed example's MLP generator and
# two-layer strided-conv discriminator (ganjax.models.seed).
GAN_ARCHITECTURES = ("dcgan", "seed_mlp")
UPSAMPLE_MODES = ("subpixel", "subpixel2x2", "transpose")
DOWNSAMPLE_MODES = ("subpixel", "strided")
DISCRIMINATOR_HEADS = ("conv3x3", "none")
NORMS = ("batch", "group", "none")
DIFF_AUGMENT_OPS = ("color", "translation", "cutout")

# Classifiers.
CLASSIFIER_MODELS = ("cnn", "resnet")
OPTIMIZERS = ("adam", "sgd")
AUGMENT_PADDINGS = ("reflect", "constant")

# Studies (ganjax.studies). experiment.study names one; "" chooses by data.subset: "few_label"
# runs the few-label study, any other subset the long-tail study. Each strategy is a module of
# ganjax.studies.strategies.
STUDIES = ("long_tail", "few_label", "repair", "robust")
LONG_TAIL_STRATEGIES = ("plain", "reweight", "oversample", "augment", "gan", "gan+augment", "gan+oversample",
                        "gan+reweight")
# vat: virtual adversarial training (Miyato et al. 2018) and pseudo_label: confidence-thresholded pseudo-labels
# (FixMatch's rule, Sohn et al. 2020), the classic semi-supervised alternatives to the GANs.
FEW_LABEL_STRATEGIES = ("semi_gan", "acgan", "supervised", "supervised_augment", "vat", "pseudo_label")
# Repair: "clean" is trained on clean images and judges every repair; "damage_augment" is trained
# with the study's damages as augmentation (the practitioner's alternative to repairing).
REPAIR_STRATEGIES = ("clean", "damage_augment")
# Adversarial robustness (ganjax.studies.robust): clean training, PGD adversarial training (Madry et al.
# 2018), TRADES (Zhang et al. 2019), and PGD adversarial training on real plus generated images
# (Gowal et al. 2021); and the standard classifier behind Defense-GAN's projection (Samangouei et al. 2018).
DEFENSE_STRATEGIES = ("defense_gan",)
ROBUST_STRATEGIES = ("standard", "pgd_at", "trades", "pgd_at_generated", *DEFENSE_STRATEGIES)
STUDY_STRATEGIES = {"long_tail": LONG_TAIL_STRATEGIES, "few_label": FEW_LABEL_STRATEGIES, "repair": REPAIR_STRATEGIES,
                    "robust": ROBUST_STRATEGIES}
STUDY_TITLES = {"long_tail": "Recognition on long-tailed data", "few_label": "Recognition with few labels",
                "repair": "Image repair judged by recognition", "robust": "Adversarial robustness"}
STRATEGY_MODULES = {
    "plain": "classic",
    "reweight": "classic",
    "oversample": "classic",
    "augment": "classic",
    "gan": "synthetic",
    "gan+augment": "synthetic",
    "gan+oversample": "synthetic",
    "gan+reweight": "synthetic",
    "semi_gan": "semi_gan",
    "acgan": "acgan",
    "supervised": "supervised",
    "supervised_augment": "supervised",
    "vat": "vat",
    "pseudo_label": "pseudo_label",
    "clean": "repair",
    "damage_augment": "repair",
    "standard": "robust",
    "pgd_at": "robust",
    "trades": "robust",
    "pgd_at_generated": "robust",
    "defense_gan": "defense_gan",
}
# Each GAN strategy's classic twin: the same training without the GAN (what a validated GAN strategy at synthetic
# share 0 reduces to; the few-label GANs' twin is supervised training on the same labels), and each study's plain
# strategy (its classic baseline with nothing added). benchmarks/regime_map.py reads both.
GAN_TWINS = {"gan": "plain", "gan+augment": "augment", "gan+oversample": "oversample", "gan+reweight": "reweight",
             "semi_gan": "supervised", "acgan": "supervised"}
PLAIN_STRATEGY = {"long_tail": "plain", "few_label": "supervised"}
LONG_TAIL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "rare_class_accuracy", "ece")
FEW_LABEL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "ece")
# Robust study: clean accuracy on the whole split, then on the attacked (scored) images clean accuracy,
# accuracy under PGD and under APGD-CE, and the worst case per image (robust only if clean-correct
# and no attack fools it).
ROBUST_METRICS = ("accuracy", "clean_accuracy", "pgd_accuracy", "apgd_ce_accuracy", "robust_accuracy")
STUDY_METRICS = {"long_tail": LONG_TAIL_METRICS, "few_label": FEW_LABEL_METRICS, "repair": FEW_LABEL_METRICS,
                 "robust": ROBUST_METRICS}
# The metric on which the best strategy is chosen, on the validation split.
SELECTION_METRIC = {"long_tail": "balanced_accuracy", "few_label": "accuracy", "repair": "accuracy",
                    "robust": "robust_accuracy"}
# Settings the study engine chooses per strategy on the validation split (experiment.grid): strategy -> the
# config keys its grid may vary. Each key changes only what that strategy computes, never a resource
# several strategies share (the GAN, the validation split), so every grid point reuses them.
SYNTHETIC_SETTINGS = ("experiment.synthetic_fraction", "experiment.synthetic_top_up", "experiment.synthetic_weight",
                      "experiment.synthetic_labels", "experiment.filter", "experiment.filter_threshold",
                      "experiment.filter_keep_fraction")
TUNABLE_KEYS = {
    **{name: SYNTHETIC_SETTINGS for name in ("gan", "gan+augment", "gan+oversample", "gan+reweight")},
    "pgd_at_generated": ("robust.generated_fraction",),
    "vat": ("semi.vat_epsilon", "semi.vat_weight", "semi.entropy_weight"),
    "pseudo_label": ("semi.pseudo_label_threshold", "semi.pseudo_label_weight"),
}
GAN_MODES = ("two_stage", "joint")
REWEIGHTS = ("effective_number", "inverse_frequency")
SYNTHETIC_FILTERS = ("none", "confidence", "discriminator")
# How synthetic images are labelled in the loss: by the label the generator was conditioned on, or by the
# soft prediction of a teacher (the plain strategy's classifier of the same seed, trained on real images).
SYNTHETIC_LABELS = ("conditioning", "teacher")
# How the engine picks a grid point on validation (experiment.grid_choice): "best" = the highest mean over
# seeds; "significant" = the grid's first point (its baseline, e.g. synthetic share 0) unless another point
# beats it in every sense the seeds allow: its paired per-seed difference's 95% interval lies above 0;
# "strict" = "significant" and the difference's 95% interval over redrawn validation images (a paired bootstrap
# stratified by class, `ganjax.report.paired_image_bootstrap`) lies above 0 too: the seeds' interval holds the
# validation images fixed, and a few images per rare class make most of the noise.
GRID_CHOICES = ("best", "significant", "strict")
SEMI_ARCHITECTURES = ("mlp", "conv")
SEMI_GENERATORS = ("mlp", "dcgan")


def study_of(subset: str, study: str = "") -> str:
    """The study a config runs: experiment.study `study` if given, else by data.subset `subset`
    ("few_label" for the few-label subset, "long_tail" for any other)."""
    if study:
        if study not in STUDIES:
            raise ValueError(f"Config key 'experiment.study' is {study!r}; choose one of {STUDIES} (or \"\" to "
                             "choose by data.subset).")
        return study
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


# Image repair (ganjax.repair). A damage is named "NAME:SEVERITY" (`parse_damage`); its severity
# lies strictly between 0 and 1 and means what DAMAGE_SEVERITIES says ("half" takes a side).
DAMAGES = ("centre", "blocks", "pixels", "noise", "saltpepper", "half")
HALF_SIDES = ("left", "right", "top", "bottom")
DAMAGE_SEVERITIES = {
    "centre": "the side of the centre block as a fraction of the image side",
    "blocks": "the fraction of the 16 blocks of a 4x4 grid that go missing",
    "pixels": "the fraction of pixels that go missing",
    "noise": "the Gaussian noise's standard deviation on the [0, 1] pixel scale",
    "saltpepper": "the fraction of pixels set to white or black",
    "half": "the side of the missing half: " + ", ".join(HALF_SIDES),
}
# Damages that change pixels where the repair is not told: their mask is all ones (every pixel is
# "known", if noisy) and the damaged region the metrics score is the whole image.
NOISE_DAMAGES = ("noise", "saltpepper")
REPAIR_METHODS = ("none", "mean", "classic", "inversion")
# The repairs that need no generator: the repair study's "best classic" is chosen among them on validation.
CLASSIC_REPAIRS = ("mean", "classic")


def parse_damages(text: str) -> tuple[str, ...]:
    """Damage specs from a comma-separated list such as "centre:0.5,pixels:0.5", each checked by
    `parse_damage`; raises ValueError for an empty list or a repeated damage."""
    specs = tuple(part.strip() for part in str(text).split(",") if part.strip())
    if not specs:
        raise ValueError("Config key 'repair.damages' names no damage; list some, e.g. 'centre:0.5,pixels:0.5'.")
    for spec in specs:
        parse_damage(spec)
    if len(set(specs)) != len(specs):
        raise ValueError(f"Config key 'repair.damages' lists a damage twice: {text!r}.")
    return specs


def parse_repair_methods(text: str) -> tuple[str, ...]:
    """Repair methods from a comma-separated list such as "none,mean,classic,inversion", each checked,
    in REPAIR_METHODS order."""
    methods = tuple(part.strip() for part in str(text).split(",") if part.strip())
    if not methods:
        raise ValueError(f"Config key 'repair.methods' names no method; list some of {', '.join(REPAIR_METHODS)}.")
    for method in methods:
        check_repair_method(method)
    return tuple(method for method in REPAIR_METHODS if method in methods)


def parse_damage(text: str) -> tuple[str, float | str]:
    """("centre", 0.5) from "centre:0.5", ("half", "left") from "half:left".

    Raises ValueError naming an unknown damage, a missing or non-numeric severity, or a
    severity outside (0, 1), and how to write a good one.
    """
    name, colon, severity = str(text).strip().partition(":")
    name, severity = name.strip(), severity.strip()
    if name not in DAMAGES:
        raise ValueError(
            f"Damage {text!r} is unknown; write NAME:SEVERITY with NAME one of {', '.join(DAMAGES)} "
            "(e.g. centre:0.5, pixels:0.5, noise:0.3, half:left)."
        )
    example = "half:left" if name == "half" else f"{name}:0.5"
    if not colon or not severity:
        raise ValueError(f"Damage {text!r} has no severity; write {name}:SEVERITY with SEVERITY "
                         f"{DAMAGE_SEVERITIES[name]}, e.g. {example}.")
    if name == "half":
        if severity not in HALF_SIDES:
            raise ValueError(f"Damage {text!r}: the missing half must be one of {', '.join(HALF_SIDES)}, "
                             f"e.g. {example}.")
        return name, severity
    try:
        value = float(severity)
    except ValueError:
        value = None
    if value is None or not 0.0 < value < 1.0:
        raise ValueError(
            f"Damage {text!r}: severity {severity!r} is not a number strictly between 0 and 1; {name}'s "
            f"severity is {DAMAGE_SEVERITIES[name]}, e.g. {example}."
        )
    return name, value


def check_repair_method(method: str) -> str:
    """`method` if it is one of REPAIR_METHODS, else a ValueError naming them."""
    if method not in REPAIR_METHODS:
        raise ValueError(f"Repair method {method!r} is unknown; choose one of {', '.join(REPAIR_METHODS)}.")
    return method


# Adversarial attacks (ganjax.attacks). Budgets (eps) are on the [0, 1] pixel scale whatever the
# images' range; "apgd-t" is AutoAttack's name for targeted APGD on the DLR loss.
ATTACKS = ("fgsm", "pgd", "apgd-ce", "apgd-t")
ATTACK_NORMS = ("linf", "l2")


def parse_budgets(text: str, key: str = "robust.extra_budgets") -> tuple[tuple[str, float], ...]:
    """(("linf", 0.2), ("l2", 1.5)) from "linf:0.2,l2:1.5" (eps on the [0, 1] pixel scale; "" gives ()).

    Raises ValueError naming a part that is not NORM:EPS, an unknown norm, a negative or
    non-numeric eps, an L-inf eps above 1, or a repeated budget."""
    budgets = []
    for part in (part.strip() for part in str(text).split(",") if part.strip()):
        norm, colon, eps = part.partition(":")
        norm = norm.strip()
        try:
            value = float(eps)
        except ValueError:
            value = None
        if not colon or value is None:
            raise ValueError(f"Config key {key!r}: {part!r} is not NORM:EPS; write e.g. 'linf:0.2,l2:1.5' "
                             f"(NORM one of {', '.join(ATTACK_NORMS)}, eps on the [0, 1] pixel scale).")
        check_attack_norm(norm)
        if not 0.0 <= value <= (1.0 if norm == "linf" else float("inf")):
            raise ValueError(f"Config key {key!r}: eps {value} of {part!r} is outside "
                             f"{'[0, 1] (the pixel range)' if norm == 'linf' else '[0, inf)'}.")
        budgets.append((norm, value))
    if len(set(budgets)) != len(budgets):
        raise ValueError(f"Config key {key!r} lists a budget twice: {text!r}.")
    return tuple(budgets)


def budget_name(norm: str, eps: float) -> str:
    """"linf:0.2": a budget's name in metrics and reports."""
    return f"{norm}:{eps:g}"


def check_attack(name: str) -> str:
    """`name` if it is one of ATTACKS, else a ValueError naming them."""
    if name not in ATTACKS:
        raise ValueError(f"Attack {name!r} is unknown; choose one of {', '.join(ATTACKS)}.")
    return name


def check_attack_norm(norm: str) -> str:
    """`norm` if it is one of ATTACK_NORMS, else a ValueError naming them."""
    if norm not in ATTACK_NORMS:
        raise ValueError(f"Attack norm {norm!r} is unknown; choose one of {', '.join(ATTACK_NORMS)} "
                         "(lowercase: linf bounds every pixel's change, l2 the change's Euclidean length).")
    return norm


def parse_grid(text: str) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], ...]:
    """The sub-grids of experiment.grid, each a tuple of axes (key, (value, ...)): "KEY=V1,V2;KEY=V1,V2" is
    one grid, the product of its axes (separated by ';'); "GRID | GRID" is the union of the grids' points
    ("" gives ()). Values stay as written; `ganjax.config` types them.

    Raises ValueError naming a part that is not KEY=VALUES, an axis without values, or a key or a value
    repeated within a grid."""
    grids = []
    for grid_text in (part.strip() for part in str(text).split("|")):
        axes = []
        for part in (part.strip() for part in grid_text.split(";") if part.strip()):
            key, equals, values = part.partition("=")
            key = key.strip()
            listed = tuple(value.strip() for value in values.split(",") if value.strip())
            if not equals or not key or not listed:
                raise ValueError(f"Config key 'experiment.grid': {part!r} is not KEY=VALUES; write e.g. "
                                 "'robust.generated_fraction=0,0.25,0.5' (axes separated by ';', grids by '|').")
            if len(set(listed)) != len(listed):
                raise ValueError(f"Config key 'experiment.grid' lists a value of {key!r} twice: {part!r}.")
            axes.append((key, listed))
        keys = [key for key, _ in axes]
        if len(set(keys)) != len(keys):
            raise ValueError(f"Config key 'experiment.grid' names a key twice in {grid_text!r}; list its values "
                             "once, separated by commas.")
        if axes:
            grids.append(tuple(axes))
        elif len(str(text).split("|")) > 1:
            raise ValueError(f"Config key 'experiment.grid' has an empty grid between '|': {text!r}.")
    return tuple(grids)


def grid_assignments(grids, keys=None) -> list[tuple[str, ...]]:
    """Every point of `parse_grid`'s grids, as "KEY=VALUE" assignments: each grid's product in order (its
    last axis fastest), then the next grid's, a point repeated only once. With `keys`, only the axes
    over those keys count (a grid with none of them adds no point)."""
    import itertools

    points = []
    for axes in grids:
        axes = [axis for axis in axes if keys is None or axis[0] in keys]
        if not axes:
            continue
        for values in itertools.product(*(values for _, values in axes)):
            point = tuple(f"{key}={value}" for (key, _), value in zip(axes, values))
            if point not in points:
                points.append(point)
    return points
