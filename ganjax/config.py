"""The configuration schema: every key ganjax reads, with its default, and its validation.

Experiment files in `configs/` start from `default_config()` and override what they need;
`validate_config` runs once at start-up and names any bad key.
"""

from __future__ import annotations

import difflib
import math

import ml_collections

from ganjax import names
from ganjax.names import parse_diff_augment, parse_hidden

CHOICES = {
    "data.subset": names.SUBSETS,
    "data.long_tail_profile": names.LONG_TAIL_PROFILES,
    "model.architecture": names.GAN_ARCHITECTURES,
    "model.upsample": names.UPSAMPLE_MODES,
    "model.downsample": names.DOWNSAMPLE_MODES,
    "model.discriminator_head": names.DISCRIMINATOR_HEADS,
    "model.generator_norm": names.NORMS,
    "gan.loss": names.GAN_LOSSES,
    "classifier.model": names.CLASSIFIER_MODELS,
    "classifier.norm": names.NORMS,
    "classifier.optimizer": names.OPTIMIZERS,
    "experiment.gan_mode": names.GAN_MODES,
    "experiment.reweight": names.REWEIGHTS,
    "experiment.augment_padding": names.AUGMENT_PADDINGS,
    "experiment.filter": names.SYNTHETIC_FILTERS,
    "experiment.synthetic_labels": names.SYNTHETIC_LABELS,
    "experiment.grid_choice": names.GRID_CHOICES,
    "semi.architecture": names.SEMI_ARCHITECTURES,
    "semi.generator": names.SEMI_GENERATORS,
}


def default_config() -> ml_collections.ConfigDict:
    """Every configurable key with its default value."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.source = "digits"  # idx:DIR | folder:DIR | npz:FILE | digits | tfds:NAME
    config.data.image_size = 0  # 0 keeps the source's native size
    config.data.subset = "none"
    config.data.imbalance_ratio = 100.0
    config.data.long_tail_profile = "exp"  # "exp" (Cui et al. 2019) or "step"
    config.data.cut_class = 0
    config.data.cut_fraction = 0.025
    config.data.labels_per_class = 10
    config.data.images_per_class = 100  # data.subset="balanced": the training images kept per class
    config.data.seed = 0
    # A class without an image (e.g. labels 0-9 plus one stray 99 make 100 classes, 90 empty) stops
    # loading with the label values and counts; True accepts such a gap when it is deliberate.
    config.data.allow_empty_classes = False

    config.model = ml_collections.ConfigDict()
    # "dcgan": ganjax.models.Generator / Discriminator (every key below applies). "seed_mlp": the seed
    # example's MLP generator (two hidden layers of generator_width units, generator_norm after each) and
    # two-layer strided-conv discriminator (discriminator_width, then twice it; model.downsample); upsample and
    # discriminator_head do not apply (ganjax.models.seed).
    config.model.architecture = "dcgan"
    # False: an unconditional GAN. Neither network has a label parameter and both ignore the labels that still
    # flow through the batches; samples are plain grids, and class-conditional metrics (intra-class FID, CAS,
    # conditional accuracy) are skipped by ganjax.evaluate. Studies that generate per class refuse such a GAN.
    config.model.conditional = True
    config.model.noise_dim = 128
    config.model.embed_dim = 64
    config.model.generator_width = 32
    config.model.discriminator_width = 64
    # "subpixel2x2" and discriminator_head "none" cut a GAN step's FLOPs towards the classic
    # ConvTranspose DCGAN's (see ganjax.models.Upsample and Discriminator).
    config.model.upsample = "subpixel"  # "subpixel" | "subpixel2x2" | "transpose"
    config.model.downsample = "subpixel"
    config.model.discriminator_head = "conv3x3"  # "conv3x3" | "none"
    config.model.generator_norm = "batch"

    config.gan = ml_collections.ConfigDict()
    config.gan.loss = "hinge"
    config.gan.n_critic = 1
    config.gan.r1_gamma = 0.0  # weight gamma/2 of the R1 penalty; 0 turns it off
    config.gan.gp_weight = 0.0  # WGAN-GP weight lambda; 0 turns it off
    config.gan.ema_decay = 0.999  # EMA of the generator's parameters; 0 turns it off
    # DiffAugment (Zhao et al. 2020) before D, on real and generated images alike: a comma-separated
    # subset of "color,translation,cutout"; "" turns it off. For small or long-tailed training sets.
    config.gan.diffaugment = ""
    # One generator forward per step: the last D update's fake images (training mode) also serve
    # the G update, which back-propagates through that same pass, as PyTorch's DCGAN example does.
    # Saves one G forward; G's update then sees the noise of D's last update instead of fresh noise.
    config.gan.share_generator_forward = False

    config.optim = ml_collections.ConfigDict()
    config.optim.generator_lr = 2e-4
    config.optim.discriminator_lr = 2e-4
    config.optim.b1 = 0.5
    config.optim.b2 = 0.999

    config.train = ml_collections.ConfigDict()
    config.train.steps = 2000
    config.train.batch_size = 64
    config.train.log_every = 50
    config.train.sample_every = 500
    config.train.checkpoint_every = 500
    config.train.keep_checkpoints = 3
    config.train.samples_per_class = 10
    # TensorBoard event files in the workdir beside metrics.jsonl: its records and the sample grids (ganjax.tensorboard).
    config.train.tensorboard = True
    # GAN batches drawn class-balanced (a class uniformly, then one of its images) rather than
    # epoch-shuffled: on long-tailed data D and G then see the tail classes as often as the head.
    config.train.class_balanced = False
    # GAN steps per jitted call. K > 1 runs K steps in one `lax.scan` (ganjax.train) to the same
    # state as 1 (bitwise on one device); log_every, sample_every, checkpoint_every and
    # eval.live_every (when on) must then be multiples of K. 1 calls the step once per step.
    config.train.steps_per_call = 1
    config.train.allow_config_change = False  # resume despite GAN-defining config changes (checkpoint.FREE_ON_RESUME)
    # A non-finite (NaN or Inf) logged loss: with nan_retries = 0 training stops with an error. With N > 0 it
    # restores the newest checkpoint whose weights are all finite (else the initialisation; newer checkpoints are
    # deleted), multiplies G's and D's learning rates by nan_lr_factor, logs it (a "nan_recovery" record in
    # metrics.jsonl) and goes on, at most N times over the workdir's life. The rates' scale and the count so far
    # are saved in each checkpoint's meta ("nan_recovery"), so a resume keeps the lowered rates (ganjax.train).
    config.train.nan_retries = 0
    config.train.nan_lr_factor = 0.5  # in (0, 1]; 1 retries at the same rates (for a transient fault)

    # Live sample-quality monitoring while training (ganjax.live); off by default because
    # it needs a domain classifier (trained and cached on first use: a few CPU minutes).
    config.eval = ml_collections.ConfigDict()
    config.eval.live_every = 0  # steps between live checks; 0 turns live monitoring off
    config.eval.live_num_samples = 500  # generated images per check, balanced over classes
    config.eval.live_classifier = ""  # domain classifier dir; "" = ganjax's cache (trained if missing)
    config.eval.live_classifier_steps = 1500
    config.eval.live_coverage_drop = 0.2  # alarm when class coverage falls this far below its best
    config.eval.live_kl_jump = 0.5  # alarm when the class KL (nats) rises this far above its best
    config.eval.live_stop_on_alarm = False  # stop training (after a checkpoint) on an alarm
    # On an alarm, continue from the best checkpoint (WORKDIR/best) instead of the collapsing state,
    # at most live_max_rollbacks times per run; then alarms only warn (or stop, as above).
    config.eval.live_rollback_on_alarm = False
    config.eval.live_max_rollbacks = 3
    config.eval.keep_best = True  # keep the checkpoint with the lowest live FID in workdir/best

    config.parallel = ml_collections.ConfigDict()
    config.parallel.coordinator_address = ""  # "host:port" starts jax.distributed
    config.parallel.num_processes = 1
    config.parallel.process_id = 0

    # The recognition experiment (ganjax.experiment): one classifier network, budget and
    # seed set shared by every strategy. The GAN it uses is the one model/gan/optim/train describe.
    config.classifier = ml_collections.ConfigDict()
    config.classifier.model = "cnn"  # "cnn" (SmallCNN) or "resnet"
    config.classifier.width = 16
    config.classifier.norm = "batch"
    config.classifier.dropout = 0.0
    config.classifier.optimizer = "adam"  # cosine-decayed over classifier.steps
    config.classifier.learning_rate = 3e-3
    config.classifier.weight_decay = 0.0
    config.classifier.steps = 1000
    config.classifier.batch_size = 64  # real + synthetic images per step and seed
    # Steps per jitted call (lax.scan, as train.steps_per_call): the same results, faster on CPU.
    config.classifier.steps_per_call = 1

    config.experiment = ml_collections.ConfigDict()
    # The study: "" chooses by data.subset ("few_label" or long_tail); "repair" is ganjax.studies.repair.
    config.experiment.study = ""
    config.experiment.strategies = ",".join(names.LONG_TAIL_STRATEGIES)  # comma-separated; see ganjax.names
    config.experiment.num_seeds = 5  # classifier seeds, trained together under jax.vmap
    config.experiment.gan_mode = "two_stage"  # "two_stage" (GAN, then classifier) or "joint"
    config.experiment.generator_workdir = ""  # a trained GAN's workdir; "" trains one in WORKDIR/gan
    config.experiment.validation_fraction = 0.1  # stratified share of the train set held out
    config.experiment.rare_classes = 3  # rare_class_accuracy covers this many least-frequent classes
    config.experiment.reweight = "effective_number"  # or "inverse_frequency"
    config.experiment.reweight_beta = 0.999  # Cui et al. 2019 effective-number beta
    config.experiment.augment_shift = 2  # pixels of random shift
    config.experiment.augment_flip = False  # horizontal flips: valid for clothes, not digits
    config.experiment.augment_padding = "constant"  # "constant" (-1) or "reflect"
    config.experiment.synthetic_fraction = 0.5  # share of each batch generated; -1: the balancing share; 0: none
    # > 0: GAN strategies draw class-balanced batches in which every class is topped up to this many
    # images with synthetic ones (ganjax.studies.long_tail.top_up_plan); synthetic_fraction is then unused.
    # 0: uniform real batches plus synthetic_fraction synthetic images.
    config.experiment.synthetic_top_up = 0
    config.experiment.synthetic_weight = 1.0  # a synthetic image's loss weight (a real one's: 1, or its class weight)
    # "conditioning": a synthetic image's target is the label it was generated for; "teacher": the soft
    # prediction of the plain strategy's classifier of the same seed (trained on the real images first).
    config.experiment.synthetic_labels = "conditioning"
    config.experiment.filter = "none"  # "none" | "confidence" | "discriminator"
    config.experiment.filter_threshold = 0.5  # confidence filter: min p(label | synthetic image)
    config.experiment.filter_keep_fraction = 0.5  # discriminator filter: top share of each batch kept
    config.experiment.ece_bins = 15
    config.experiment.eval_batch_size = 500
    # Free text for report.md's setup: how the config's settings were chosen (e.g. which were
    # chosen on validation, and any that were not).
    config.experiment.note = ""
    # Settings the study engine chooses per strategy on the validation split: "KEY=V1,V2;KEY=V1,V2" tries
    # the product of the axes for every listed strategy that may vary those keys (ganjax.names.TUNABLE_KEYS),
    # "GRID | GRID" the union of grids; the engine keeps the point with the best validation score and reads
    # the test split for that point alone. "" = no grid. E.g. "robust.generated_fraction=0,0.25,0.5", or
    # "experiment.synthetic_top_up=0;experiment.synthetic_fraction=0,0.25 | experiment.synthetic_top_up=1000".
    config.experiment.grid = ""
    # How a grid's point is chosen on validation (ganjax.names.GRID_CHOICES): "best" (highest mean over seeds)
    # or "significant" (the grid's first point unless another beats it with a paired 95% interval over the
    # seeds above 0: a guard against validation noise on small validation splits; list the safe point first),
    # or "strict" ("significant", and the interval over redrawn validation images above 0 as well; studies
    # choosing on accuracy or balanced accuracy).
    config.experiment.grid_choice = "best"

    # Few labels (data.subset="few_label"; ganjax.studies.few_label): the networks of Salimans et al. 2016's
    # MNIST experiments, shared by the strategies semi_gan, acgan, supervised, supervised_augment, vat.
    config.semi = ml_collections.ConfigDict()
    config.semi.architecture = "mlp"  # "mlp" (the paper's MNIST network) or "conv" (its CIFAR-10 one, smaller)
    config.semi.hidden = "1000,500,250,250,250"  # mlp: discriminator / classifier hidden widths
    config.semi.conv_width = 32  # conv: channels of the first stage (then 2x)
    config.semi.input_dropout = 0.2  # conv: dropout rate on the pixels (0.5 after each stage)
    config.semi.input_noise = 0.3  # std of Gaussian noise on the pixels (the paper: 0.3, on [0, 1])
    config.semi.hidden_noise = 0.5  # std of Gaussian noise after every hidden layer
    config.semi.weight_norm = True
    config.semi.data_init = False  # weight norm's data-dependent init (the paper's; less stable here, see BENCHMARKS.md)
    config.semi.feature_layer = -1  # mlp: the hidden layer feature matching compares (-1 = the last, the paper's)
    config.semi.train_hidden_scale = True  # mlp + weight norm: False keeps the hidden layers' scales g fixed (the authors' code)
    config.semi.generator = "mlp"  # "mlp" (the paper's) or "dcgan" (ganjax's Generator, sized by model.*)
    config.semi.noise_dim = 100
    config.semi.generator_hidden = 500  # mlp generator's hidden width
    config.semi.steps = 6000
    config.semi.batch_size = 100  # unlabelled real images (and generated ones) per step
    config.semi.labelled_batch_size = 100  # labelled images per step, drawn from the labelled subset
    config.semi.learning_rate = 3e-3  # Adam (b1 from optim.b1), cosine-decayed over semi.steps
    config.semi.generator_learning_rate = 0.0  # the generator's peak rate (0 = semi.learning_rate, the paper's)
    config.semi.unlabelled_weight = 1.0  # weight of the K+1 GAN's unsupervised loss
    config.semi.entropy_weight = 0.0  # K+1 GAN: weight of the prediction entropy on unlabelled images
    config.semi.separate_matching_batch = False  # K+1 GAN: G's feature matching on a 2nd unlabelled batch
    config.semi.pull_away_weight = 0.0  # K+1 GAN: weight of the pull-away term in G's loss (Dai et al. 2017)
    config.semi.manifold_weight = 0.0  # K+1 GAN: weight of D's manifold regulariser (Lecouat et al. 2018)
    config.semi.manifold_epsilon = 1.0  # K+1 GAN: its step in the generator's noise space (|z| ~ 10)
    # vat (virtual adversarial training, Miyato et al. 2018; semi.entropy_weight adds its EntMin term): the
    # perturbation's L2 norm per image in model range [-1, 1] (a 28x28 image's norm is ~20), the power
    # iteration's finite-difference step (small beside epsilon, large beside float32 rounding), power
    # iterations, and the weight of the divergence. On Fashion-MNIST with 100 labels VAT alone drifted toward a
    # collapse over 5,000 steps at eps 1.5 and above; with semi.entropy_weight=1 (VAT+EntMin) it held (BENCHMARKS.md,
    # the regime map's few-label cell; experiment.grid can confine entropy_weight to vat).
    config.semi.vat_epsilon = 3.0
    config.semi.vat_xi = 0.1
    config.semi.vat_iterations = 1
    config.semi.vat_weight = 1.0
    # pseudo_label (FixMatch's rule, Sohn et al. 2020): the confidence of the network's noise-free prediction
    # above which an unlabelled image takes its argmax as a label (FixMatch: 0.95), and that loss's weight.
    config.semi.pseudo_label_threshold = 0.95
    config.semi.pseudo_label_weight = 1.0
    # Test the classifier with an exponential moving (Polyak) average of its params, this decay
    # (0 = the last step's params); every strategy alike.
    config.semi.average_decay = 0.0
    config.semi.acgan_class_weight = 1.0  # weight of AC-GAN's auxiliary classification losses
    config.semi.generator_eval_samples = 10000  # AC-GAN samples judged by the domain classifier; 0 skips
    # Labelled training images per class, outside the labelled subset, held out to compare settings
    # on validation accuracy rather than on test (0 = none). A real few-label user would not have them.
    config.semi.validation_per_class = 0
    # Steps per jitted call (lax.scan, as train.steps_per_call): the same results, faster on CPU.
    config.semi.steps_per_call = 1

    # Image repair (experiment.study="repair"; ganjax.studies.repair): damaged test images repaired and
    # judged by the clean classifier. The GAN is experiment.generator_workdir's ("" trains one in WORKDIR/gan).
    config.repair = ml_collections.ConfigDict()
    config.repair.damages = "centre:0.5,pixels:0.5"  # comma-separated NAME:SEVERITY (ganjax.names.DAMAGES)
    config.repair.methods = ",".join(names.REPAIR_METHODS)  # repairs scored, of none, mean, classic, inversion
    config.repair.num_test = 1000  # test images damaged and repaired (class-stratified, data.seed); 0 = all
    config.repair.num_validation = 1000  # validation images on which the best classic repair is chosen; 0 = all
    config.repair.clean_fraction = 0.5  # damage_augment: share of each batch left clean (the rest: a damage each)
    # Inversion (ganjax.repair.inversion): Adam steps, restarts, the prior's weight lambda, the step size,
    # the importance window, Poisson blending, images per compiled program.
    config.repair.steps = 500
    config.repair.restarts = 4
    config.repair.prior_weight = 0.003
    config.repair.learning_rate = 0.03
    config.repair.window = 7
    config.repair.blend = False
    config.repair.batch_size = 16
    # Classes tried per image: 0 tries every class (Yeh et al.'s rule for a conditional generator);
    # k > 0 tries the clean classifier's k likeliest classes for the classic repair of the image (K/k times cheaper).
    config.repair.candidate_classes = 0
    # Warm start (ganjax.repair.encoder): > 0 trains an encoder this many steps to invert the generator
    # on its own samples under the study's damages, and starts one restart per candidate at E(x); 0 = off.
    config.repair.encoder_steps = 0

    # Adversarial robustness (experiment.study="robust"; ganjax.studies.robust): classifiers trained by the
    # strategies standard, pgd_at, trades and pgd_at_generated, evaluated under L-inf PGD and APGD-CE.
    # Budgets are on the [0, 1] pixel scale whatever the images' range (ganjax.attacks). The usual
    # budget is 8/255 for CIFAR-like images; ganjax's datasets are MNIST-like (digits, Fashion-MNIST),
    # for which 0.1 is the default here.
    config.robust = ml_collections.ConfigDict()
    config.robust.eps = 0.1  # L-inf budget of the evaluation attacks
    config.robust.train_eps = 0.1  # L-inf budget of the training attacks (pgd_at, trades, pgd_at_generated)
    config.robust.train_steps = 7  # PGD steps per training step
    config.robust.train_step_size = 0.0  # PGD step size in training; 0 = 2.5 train_eps / train_steps
    config.robust.eval_steps = 20  # PGD steps in evaluation (step size 2.5 eps / eval_steps)
    config.robust.apgd_steps = 100  # APGD-CE iterations in evaluation (Croce & Hein 2020: 100)
    config.robust.eval_restarts = 1  # random restarts of each evaluation attack
    config.robust.trades_beta = 6.0  # TRADES: weight of KL(f(x) || f(x_adv)) (Zhang et al. 2019: 6 on CIFAR-10)
    # pgd_at_generated: share of each batch made inside the step by the conditional GAN, labels uniform.
    config.robust.generated_fraction = 0.5
    config.robust.num_test = 1000  # test images attacked (class-stratified, data.seed); 0 = all
    config.robust.num_validation = 500  # validation images attacked (the best strategy is chosen on them); 0 = all
    # More budgets, "NORM:EPS" comma-separated, under which the test images are attacked too (PGD and APGD-CE,
    # worst case per budget); validation and the choice use robust.eps alone. "" = none.
    config.robust.extra_budgets = "linf:0.2,l2:1.5"
    # AdvGAN (Xiao et al. 2018; ganjax.attacks.advgan) at robust.eps against these strategies' classifiers,
    # trained for advgan_steps on the training part (0 = no AdvGAN); its success rate is shown beside PGD's.
    config.robust.advgan_steps = 1000
    config.robust.advgan_against = "standard,pgd_at"
    # defense_gan (ganjax.defense_gan; ganjax.studies.strategies.defense_gan): the standard classifier behind a
    # projection onto the GAN's range, attacked naively and by BPDA + EOT at robust.eps (L-inf).
    config.defense = ml_collections.ConfigDict()
    config.defense.steps = 20  # Adam steps of the projection (the authors' code: 200)
    config.defense.restarts = 1  # random starts per candidate class (the authors' code: 10)
    config.defense.classes = 2  # candidate classes: the classifier's likeliest; 0 = every class
    config.defense.learning_rate = 0.05
    config.defense.attack_steps = 10  # BPDA + EOT PGD steps (step size 2.5 eps / steps)
    config.defense.eot_draws = 1  # projection draws averaged per attack step
    config.defense.num_test = 200  # test images the defence is judged on (class-stratified subset of robust's)
    config.defense.num_validation = 100  # validation images, likewise
    config.defense.batch_size = 100  # images per compiled projection
    return config


def shipped_config_dir() -> str:
    """The directory of the experiment configs shipped with ganjax: ganjax/configs in an installed
    wheel (pyproject.toml maps the repository's configs/ there), else configs/ beside the package
    (a source checkout or an editable install)."""
    import os

    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "configs")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "configs")


def shipped_config_names() -> list[str]:
    """The names of the shipped configs ("digits", "fashion_mnist_lt", ...)."""
    import os

    directory = shipped_config_dir()
    if not os.path.isdir(directory):
        return []
    return sorted(name[:-3] for name in os.listdir(directory) if name.endswith(".py") and not name.startswith("_"))


def find_config_file(name_or_path: str) -> str:
    """The config file of `name_or_path`: an existing file, else the shipped config of that name,
    written "digits", "digits.py" or "configs/digits.py" (from any working directory).

    Raises:
      FileNotFoundError listing the shipped names when it is neither.
    """
    import os

    if os.path.isfile(name_or_path):
        return name_or_path
    directory, file_name = os.path.split(os.path.normpath(name_or_path))
    name = file_name.removesuffix(".py")
    shipped = shipped_config_names()
    if directory in ("", "configs") and name in shipped:
        return os.path.join(shipped_config_dir(), name + ".py")
    raise FileNotFoundError(
        f"Config {name_or_path!r} is neither a file nor a shipped config; pass a config file's path or one of: "
        f"{', '.join(shipped)}."
    )


def load_config(name_or_path: str) -> ml_collections.ConfigDict:
    """Runs `get_config()` of an experiment file ("configs/digits.py" or just "digits") and validates it.

    For notebooks and scripts; the CLIs take the same `--config NAME_OR_PATH`.
    """
    import importlib.util

    path = find_config_file(name_or_path)
    spec = importlib.util.spec_from_file_location("ganjax_experiment_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"Config file {path!r} defines no get_config(); see configs/digits.py.")
    return validate_config(module.get_config())


def config_from_dict(saved: dict) -> ml_collections.ConfigDict:
    """A validated config from a saved dict (e.g. a checkpoint's); keys added to the schema
    since it was saved take their defaults."""
    config = default_config()
    for name, value in flatten(ml_collections.ConfigDict(saved)).items():
        check_key(name)
        _set_key(config, name, value)
    return validate_config(config)


def apply_overrides(config: ml_collections.ConfigDict, assignments: list[str]) -> ml_collections.ConfigDict:
    """Sets dotted keys from "KEY=VALUE" strings (e.g. "model.upsample=subpixel2x2"), each VALUE
    parsed as the type of the key's default, and validates the result.

    For scripts with argparse flags (benchmarks/train_step.py --set); the absl CLIs take
    `--config.KEY=VALUE` instead.
    """
    schema = flatten(default_config())
    for assignment in assignments:
        name, separator, text = assignment.partition("=")
        if not separator:
            raise ValueError(f"Config override {assignment!r} is not KEY=VALUE, e.g. model.upsample=subpixel2x2.")
        name = name.strip()
        check_key(name, schema)
        _set_key(config, name, _parse_value(name, text.strip(), type(schema[name])))
    return validate_config(config)


def _parse_value(name: str, text: str, kind: type) -> bool | int | float | str:
    """`text` as a value of `kind` (bool: true/false, yes/no or 1/0, any case)."""
    if kind is bool:
        truth = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if text.lower() in truth:
            return truth[text.lower()]
    else:
        try:
            return kind(text)
        except ValueError:
            pass
    raise ValueError(f"Config key {name!r} must be of type {kind.__name__}, got {text!r}.")


def _set_key(config: ml_collections.ConfigDict, name: str, value) -> None:
    """config[name] = value for a dotted key such as "train.steps"."""
    section, _, key = name.rpartition(".")
    target = config
    for part in filter(None, section.split(".")):
        target = target[part]
    target[key] = value


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
    """{dotted key: value} of every leaf of `config`."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


NOT_IN_SCHEMA = "<not in this ganjax>"


def config_differences(saved: dict, config: ml_collections.ConfigDict, ignore: tuple[str, ...] = ()) -> dict:
    """{dotted key: (saved value, new value)} for the keys where a saved config (a dict, e.g. a
    checkpoint's or a study record's) and `config` differ, skipping keys that match an fnmatch
    pattern of `ignore` (e.g. "train.steps", "eval.*").

    A key the saved config lacks (saved before the key existed) counts as its default, as in
    `config_from_dict`; a saved key this ganjax no longer has shows its new value as NOT_IN_SCHEMA.
    """
    import fnmatch
    import json

    def flat(tree: dict, prefix: str = "") -> dict:
        items = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items

    old = flat(json.loads(default_config().to_json()))
    old.update(flat(json.loads(json.dumps(saved, default=str))))
    new = flat(json.loads(config.to_json()))
    differences = {}
    for key in sorted(old.keys() | new.keys()):
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in ignore):
            continue
        old_value, new_value = old.get(key, NOT_IN_SCHEMA), new.get(key, NOT_IN_SCHEMA)
        if old_value != new_value:
            differences[key] = (old_value, new_value)
    return differences


def check_key(name: str, schema: dict | None = None) -> None:
    """Raises ValueError if dotted key `name` (e.g. "train.steps") is not in the schema."""
    schema = flatten(default_config()) if schema is None else schema
    if name in schema:
        return
    close = difflib.get_close_matches(name, list(schema), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Config key {name!r} is unknown.{hint} Valid keys: {sorted(schema)}.")


def check_override_flags(argv: list[str]) -> None:
    """Checks the keys of `--config.KEY=VALUE` command-line overrides before absl parses them
    (absl takes -flag as --flag, so both spellings are checked)."""
    for argument in argv:
        if argument == "--":  # absl reads what follows as positional arguments
            break
        if argument.startswith(("--config.", "-config.")):
            check_key(argument.lstrip("-")[len("config."):].split("=", 1)[0])


def validate_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks keys, types and values against `default_config()`; returns the config.

    Raises:
      ValueError naming the first offending key and what to do about it.
    """
    schema = flatten(default_config())
    given = flatten(config)
    for name, value in given.items():
        check_key(name, schema)
        expected = type(schema[name])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(
                f"Config key {name!r} must be of type {expected.__name__}, got {value!r} "
                f"({type(value).__name__})."
            )
        if expected is float and not math.isfinite(value):
            raise ValueError(f"Config key {name!r} must be a finite number, got {value!r}.")
        # JAX counts (steps, seeds, sizes) in 32-bit integers.
        if expected is int and not -(2**31) <= value < 2**31:
            raise ValueError(f"Config key {name!r} is {value}, outside the 32-bit integers [-2**31, 2**31).")
    for name in schema:
        if name not in given:
            raise ValueError(f"Config key {name!r} is missing; start configs from ganjax.config.default_config().")
    for name, allowed in CHOICES.items():
        if given[name] not in allowed:
            raise ValueError(f"Config key {name!r} is {given[name]!r}; choose one of {allowed}.")
    positive = ["train.steps", "train.batch_size", "train.log_every", "train.sample_every",
                "train.checkpoint_every", "train.keep_checkpoints", "gan.n_critic",
                "model.noise_dim", "model.generator_width", "model.discriminator_width",
                "model.embed_dim", "train.samples_per_class", "optim.generator_lr", "optim.discriminator_lr",
                "data.imbalance_ratio", "parallel.num_processes"]
    for name in positive:
        if given[name] <= 0:
            raise ValueError(f"Config key {name!r} must be positive, got {given[name]}.")
    non_negative = ["seed", "data.seed", "data.image_size", "data.cut_class", "data.labels_per_class",
                    "data.images_per_class", "gan.r1_gamma", "gan.gp_weight", "classifier.weight_decay",
                    "eval.live_coverage_drop", "eval.live_kl_jump", "parallel.process_id"]
    for name in non_negative:
        if given[name] < 0:
            raise ValueError(f"Config key {name!r} must be >= 0, got {given[name]}.")
    if not 0.0 <= given["data.cut_fraction"] <= 1.0:
        raise ValueError(f"Config key 'data.cut_fraction' must be in [0, 1], got {given['data.cut_fraction']}.")
    for name in ("optim.b1", "optim.b2"):
        if not 0.0 <= given[name] < 1.0:
            raise ValueError(f"Config key {name!r} must be in [0, 1) (an Adam decay rate), got {given[name]}.")
    if given["parallel.process_id"] >= given["parallel.num_processes"]:
        raise ValueError(f"Config key 'parallel.process_id' must be below parallel.num_processes="
                         f"{given['parallel.num_processes']}, got {given['parallel.process_id']}.")
    if given["eval.live_every"] < 0:
        raise ValueError(f"Config key 'eval.live_every' must be >= 0 (0 = off), got {given['eval.live_every']}.")
    _validate_steps_per_call(given)
    if given["train.nan_retries"] < 0:
        raise ValueError(f"Config key 'train.nan_retries' must be >= 0 (0 = stop at a non-finite loss), "
                         f"got {given['train.nan_retries']}.")
    if not 0.0 < given["train.nan_lr_factor"] <= 1.0:
        raise ValueError(f"Config key 'train.nan_lr_factor' must be in (0, 1] (the learning rates' factor at each "
                         f"NaN recovery), got {given['train.nan_lr_factor']}.")
    if given["eval.live_max_rollbacks"] < 0:
        raise ValueError(f"Config key 'eval.live_max_rollbacks' must be >= 0, got {given['eval.live_max_rollbacks']}.")
    if given["eval.live_rollback_on_alarm"] and not given["eval.keep_best"]:
        raise ValueError("Config key 'eval.live_rollback_on_alarm' needs eval.keep_best=True: the roll-back "
                         "restores the best checkpoint that keep_best saves.")
    for name in ("eval.live_num_samples", "eval.live_classifier_steps"):
        if given[name] < 2:
            raise ValueError(f"Config key {name!r} must be at least 2, got {given[name]}.")
    parse_diff_augment(given["gan.diffaugment"])
    if not 0.0 <= given["gan.ema_decay"] < 1.0:
        raise ValueError(f"Config key 'gan.ema_decay' must be in [0, 1), got {given['gan.ema_decay']}.")
    if given["data.subset"] == "long_tail" and given["data.imbalance_ratio"] <= 1:
        raise ValueError(
            f"Config key 'data.imbalance_ratio' must be > 1 for a long-tailed subset, "
            f"got {given['data.imbalance_ratio']}."
        )
    _validate_recognition(given)
    _validate_semi(given)
    _validate_repair(given)
    _validate_robust(given)
    _validate_grid(config, given)
    return config


def with_overrides(config: ml_collections.ConfigDict, assignments) -> ml_collections.ConfigDict:
    """A validated copy of `config` with "KEY=VALUE" `assignments` applied (`apply_overrides`); `config`
    is left as it is."""
    return apply_overrides(config.copy_and_resolve_references(), list(assignments))


def _validate_grid(config: ml_collections.ConfigDict, given: dict) -> None:
    """experiment.grid: every key in the schema and tunable by a listed strategy, every point a valid config."""
    grids = names.parse_grid(given["experiment.grid"])
    if not grids:
        return
    listed = names.parse_strategies(given["experiment.strategies"])
    tunable = sorted({key for name in listed for key in names.TUNABLE_KEYS.get(name, ())})
    for key in sorted({key for axes in grids for key, _ in axes}):
        check_key(key)
        if key not in tunable:
            raise ValueError(
                f"Config key 'experiment.grid' varies {key!r}, which none of the listed strategies "
                f"({', '.join(listed)}) lets the engine choose; they may vary {tunable or 'no key'} "
                f"(ganjax.names.TUNABLE_KEYS: {names.TUNABLE_KEYS})."
            )
    plain = config.copy_and_resolve_references()
    plain.experiment.grid = ""
    for point in names.grid_assignments(grids):
        try:
            with_overrides(plain, point)
        except ValueError as error:
            raise ValueError(f"Config key 'experiment.grid': the point {', '.join(point)} is not a valid "
                             f"config: {error}") from error


def _validate_steps_per_call(given: dict) -> None:
    """train.steps_per_call >= 1, and every periodic event of the loop falls on a call boundary."""
    steps_per_call = given["train.steps_per_call"]
    if steps_per_call < 1:
        raise ValueError(f"Config key 'train.steps_per_call' must be >= 1 (1 = one step per call), got {steps_per_call}.")
    periods = ["train.log_every", "train.sample_every", "train.checkpoint_every"]
    periods += ["eval.live_every"] if given["eval.live_every"] > 0 else []
    misaligned = {name: given[name] for name in periods if given[name] % steps_per_call}
    if misaligned:
        raise ValueError(
            f"Config keys {misaligned} must be multiples of 'train.steps_per_call'={steps_per_call}, since "
            f"the loop logs, samples, checks and saves only between calls; make them multiples of "
            f"{steps_per_call} or lower train.steps_per_call (1 always fits)."
        )


def _validate_recognition(given: dict) -> None:
    """Checks of the classifier and experiment sections (see ganjax.experiment)."""
    for name in ["classifier.width", "classifier.steps", "classifier.batch_size", "classifier.steps_per_call",
                 "experiment.num_seeds",
                 "experiment.rare_classes", "experiment.ece_bins", "experiment.eval_batch_size"]:
        if given[name] <= 0:
            raise ValueError(f"Config key {name!r} must be positive, got {given[name]}.")
    study = names.study_of(given["data.subset"], given["experiment.study"])
    allowed = names.STUDY_STRATEGIES[study]
    strategies = names.parse_strategies(given["experiment.strategies"])
    if not strategies:
        raise ValueError(f"Config key 'experiment.strategies' names no strategy; use some of {allowed}.")
    meant_for = {"long_tail": "long-tailed data", "few_label": "few labels (data.subset='few_label')",
                 "repair": "image repair (experiment.study='repair')",
                 "robust": "adversarial robustness (experiment.study='robust')"}
    for name in strategies:
        owner = next((other for other, listed in names.STUDY_STRATEGIES.items() if name in listed), study)
        if owner != study:
            raise ValueError(
                f"Strategy {name!r} in 'experiment.strategies' is for {meant_for[owner]}, but this config runs the "
                f"{study} study (data.subset {given['data.subset']!r}, experiment.study "
                f"{given['experiment.study']!r}); choose from {allowed}."
            )
        if name not in allowed:
            raise ValueError(
                f"Config key 'experiment.strategies' holds unknown strategy {name!r}; "
                f"choose from {allowed} (comma-separated)."
            )
    if not 0.0 <= given["classifier.dropout"] < 1.0:
        raise ValueError(f"Config key 'classifier.dropout' must be in [0, 1), got {given['classifier.dropout']}.")
    if given["classifier.learning_rate"] <= 0:
        raise ValueError(f"Config key 'classifier.learning_rate' must be positive, got {given['classifier.learning_rate']}.")
    if not 0.0 < given["experiment.validation_fraction"] < 1.0:
        raise ValueError(
            f"Config key 'experiment.validation_fraction' must be in (0, 1), got {given['experiment.validation_fraction']}."
        )
    if not 0.0 < given["experiment.reweight_beta"] < 1.0:
        raise ValueError(f"Config key 'experiment.reweight_beta' must be in (0, 1), got {given['experiment.reweight_beta']}.")
    if given["experiment.augment_shift"] < 0:
        raise ValueError(f"Config key 'experiment.augment_shift' must be >= 0, got {given['experiment.augment_shift']}.")
    fraction = given["experiment.synthetic_fraction"]
    if fraction != -1 and not 0.0 <= fraction < 1.0:
        raise ValueError(
            f"Config key 'experiment.synthetic_fraction' must be in [0, 1) (0: no synthetic images, the classic "
            f"twin of each GAN strategy), or -1 for the share that balances the classes; got {fraction}."
        )
    if given["experiment.synthetic_top_up"] < 0:
        raise ValueError(
            f"Config key 'experiment.synthetic_top_up' must be >= 0 (0 = use synthetic_fraction), "
            f"got {given['experiment.synthetic_top_up']}."
        )
    if given["experiment.synthetic_labels"] == "teacher" and given["experiment.gan_mode"] == "joint":
        raise ValueError("Config key 'experiment.synthetic_labels'='teacher' needs experiment.gan_mode='two_stage' "
                         "(the joint step has no teacher); or use synthetic_labels='conditioning'.")
    if not given["experiment.synthetic_weight"] > 0:
        raise ValueError(f"Config key 'experiment.synthetic_weight' must be positive (for none, set "
                         f"experiment.synthetic_fraction=0), got {given['experiment.synthetic_weight']}.")
    if not 0.0 <= given["experiment.filter_threshold"] <= 1.0:
        raise ValueError(f"Config key 'experiment.filter_threshold' must be in [0, 1], got {given['experiment.filter_threshold']}.")
    if not 0.0 < given["experiment.filter_keep_fraction"] <= 1.0:
        raise ValueError(
            f"Config key 'experiment.filter_keep_fraction' must be in (0, 1], got {given['experiment.filter_keep_fraction']}."
        )


def _validate_semi(given: dict) -> None:
    """Checks of the few-label section (see ganjax.studies.few_label)."""
    for name in ["semi.conv_width", "semi.noise_dim", "semi.generator_hidden", "semi.steps", "semi.batch_size",
                 "semi.labelled_batch_size", "semi.steps_per_call", "semi.vat_epsilon", "semi.vat_xi",
                 "semi.vat_iterations"]:
        if given[name] <= 0:
            raise ValueError(f"Config key {name!r} must be positive, got {given[name]}.")
    for name in ["semi.input_noise", "semi.hidden_noise", "semi.unlabelled_weight", "semi.entropy_weight",
                 "semi.pull_away_weight", "semi.manifold_weight", "semi.acgan_class_weight", "semi.generator_eval_samples",
                 "semi.validation_per_class", "semi.vat_weight", "semi.pseudo_label_weight"]:
        if given[name] < 0:
            raise ValueError(f"Config key {name!r} must be >= 0, got {given[name]}.")
    if not 0.0 <= given["semi.pseudo_label_threshold"] <= 1.0:
        raise ValueError(
            f"Config key 'semi.pseudo_label_threshold' is a softmax confidence and must be in [0, 1] (FixMatch: "
            f"0.95), got {given['semi.pseudo_label_threshold']}."
        )
    if not 0.0 <= given["semi.input_dropout"] < 1.0:
        raise ValueError(f"Config key 'semi.input_dropout' must be in [0, 1), got {given['semi.input_dropout']}.")
    if not 0.0 <= given["semi.average_decay"] < 1.0:
        raise ValueError(
            f"Config key 'semi.average_decay' must be in [0, 1) (0 = test the last step's params), "
            f"got {given['semi.average_decay']}."
        )
    if given["semi.manifold_epsilon"] <= 0:
        raise ValueError(f"Config key 'semi.manifold_epsilon' must be positive, got {given['semi.manifold_epsilon']}.")
    if given["semi.learning_rate"] <= 0:
        raise ValueError(f"Config key 'semi.learning_rate' must be positive, got {given['semi.learning_rate']}.")
    if given["semi.generator_learning_rate"] < 0:
        raise ValueError(
            f"Config key 'semi.generator_learning_rate' must be >= 0 (0 = semi.learning_rate), "
            f"got {given['semi.generator_learning_rate']}."
        )
    depth = len(parse_hidden(given["semi.hidden"]))
    if not -depth <= given["semi.feature_layer"] < depth:
        raise ValueError(
            f"Config key 'semi.feature_layer' = {given['semi.feature_layer']} names no hidden layer of "
            f"semi.hidden={given['semi.hidden']!r}; use an index in [{-depth}, {depth - 1}] (-1 = the last)."
        )
    if given["data.subset"] == "balanced" and given["data.images_per_class"] <= 0:
        raise ValueError(f"Config key 'data.images_per_class' must be positive for a balanced subset, got "
                         f"{given['data.images_per_class']}.")
    if given["data.subset"] == "few_label" and given["data.labels_per_class"] <= 0:
        raise ValueError(
            f"Config key 'data.labels_per_class' must be positive for a few-label subset, got "
            f"{given['data.labels_per_class']}; a semi-supervised model needs at least one label per class."
        )


def _validate_repair(given: dict) -> None:
    """Checks of the repair section (see ganjax.studies.repair)."""
    for name, parse in [("repair.damages", names.parse_damages), ("repair.methods", names.parse_repair_methods)]:
        try:
            parse(given[name])
        except ValueError as error:  # the parsers also serve the repair CLI, so their messages name no key
            raise ValueError(f"Config key {name!r}: {error}") from error
    for name in ["repair.steps", "repair.restarts", "repair.batch_size"]:
        if given[name] <= 0:
            raise ValueError(f"Config key {name!r} must be positive, got {given[name]}.")
    for name in ["repair.num_test", "repair.num_validation", "repair.candidate_classes", "repair.prior_weight",
                 "repair.encoder_steps"]:
        if given[name] < 0:
            raise ValueError(f"Config key {name!r} must be >= 0, got {given[name]}.")
    if given["repair.learning_rate"] <= 0:
        raise ValueError(f"Config key 'repair.learning_rate' must be positive, got {given['repair.learning_rate']}.")
    if given["repair.window"] < 1 or given["repair.window"] % 2 == 0:
        raise ValueError(f"Config key 'repair.window' must be a positive odd integer, got {given['repair.window']}.")
    if not 0.0 <= given["repair.clean_fraction"] < 1.0:
        raise ValueError(f"Config key 'repair.clean_fraction' must be in [0, 1), got {given['repair.clean_fraction']}.")
    if names.study_of(given["data.subset"], given["experiment.study"]) == "repair" and given["data.subset"] != "none":
        raise ValueError(
            f"The repair study trains on the whole training split; data.subset is {given['data.subset']!r}. "
            "Set data.subset='none'."
        )


def _validate_robust(given: dict) -> None:
    """Checks of the robust section (see ganjax.studies.robust)."""
    for name in ["robust.eps", "robust.train_eps"]:
        if not 0.0 < given[name] <= 1.0:
            raise ValueError(
                f"Config key {name!r} is {given[name]}; it is an L-inf budget on the [0, 1] pixel scale, so it "
                f"must be in (0, 1]: e.g. 0.1 for MNIST-like images, 8/255 = {8 / 255:.4f} for CIFAR (not 8)."
            )
    for name in ["robust.train_steps", "robust.eval_steps", "robust.apgd_steps", "robust.eval_restarts"]:
        if given[name] < 1:
            raise ValueError(f"Config key {name!r} must be at least 1, got {given[name]}.")
    if not 0.0 <= given["robust.train_step_size"] <= 1.0:
        raise ValueError(
            f"Config key 'robust.train_step_size' must be in [0, 1] (the [0, 1] pixel scale; 0 = 2.5 train_eps / "
            f"train_steps), got {given['robust.train_step_size']}."
        )
    for name in ["robust.trades_beta", "robust.num_test", "robust.num_validation"]:
        if given[name] < 0:
            raise ValueError(f"Config key {name!r} must be >= 0, got {given[name]}.")
    names.parse_budgets(given["robust.extra_budgets"])
    if given["robust.advgan_steps"] < 0:
        raise ValueError(f"Config key 'robust.advgan_steps' must be >= 0 (0 = no AdvGAN), got {given['robust.advgan_steps']}.")
    unknown = set(names.parse_strategies(given["robust.advgan_against"])) - set(names.ROBUST_STRATEGIES)
    if unknown:
        raise ValueError(f"Config key 'robust.advgan_against' names {sorted(unknown)}, not robust strategies; "
                         f"use some of {names.ROBUST_STRATEGIES}.")
    for name in ["defense.steps", "defense.restarts", "defense.attack_steps", "defense.eot_draws",
                 "defense.num_test", "defense.num_validation", "defense.batch_size"]:
        if given[name] < 1:
            raise ValueError(f"Config key {name!r} must be at least 1, got {given[name]}.")
    if given["defense.classes"] < 0:
        raise ValueError(f"Config key 'defense.classes' must be >= 0 (0 = every class), got {given['defense.classes']}.")
    if not given["defense.learning_rate"] > 0:
        raise ValueError(f"Config key 'defense.learning_rate' must be positive, got {given['defense.learning_rate']}.")
    fraction = given["robust.generated_fraction"]
    if not 0.0 <= fraction < 1.0:
        raise ValueError(
            f"Config key 'robust.generated_fraction' must be in [0, 1) (the share of each pgd_at_generated batch "
            f"that the GAN makes; 0 trains as pgd_at does), got {fraction}."
        )
    if names.study_of(given["data.subset"], given["experiment.study"]) != "robust":
        return
    if given["data.subset"] not in ("none", "balanced"):
        raise ValueError(
            f"The robust study trains on the whole training split or a balanced subset of it; data.subset is "
            f"{given['data.subset']!r}. Set data.subset='none' (or 'balanced' with data.images_per_class)."
        )
    if "pgd_at_generated" in names.parse_strategies(given["experiment.strategies"]):
        batch_size = given["classifier.batch_size"]
        generated = int(round(fraction * batch_size))
        if generated > batch_size - 1:
            raise ValueError(
                f"Config key 'robust.generated_fraction'={fraction} of classifier.batch_size={batch_size} gives "
                f"{generated} generated images per step; pgd_at_generated needs at least one real image: raise "
                "classifier.batch_size or lower the fraction."
            )
