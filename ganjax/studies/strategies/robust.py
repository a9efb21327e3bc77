"""standard, pgd_at, trades and pgd_at_generated: the robust study's classifiers (ganjax.studies.robust).

All four train the long-tail study's classifier network on uniform batches of the training part
(`classic.classifier_strategy` with the plain composition), for the same steps and batch size:

  standard          cross-entropy on the clean batch;
  pgd_at            PGD adversarial training (Madry et al. 2018, "Towards Deep Learning Models Resistant to
                    Adversarial Attacks", eq. 2.1): every step replaces the batch by its L-inf PGD
                    adversarial examples (robust.train_eps, robust.train_steps steps of
                    robust.train_step_size, by default 2.5 train_eps / train_steps, uniform random start)
                    and takes a cross-entropy step on them;
  trades            TRADES (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and
                    Accuracy", eq. 5): CE(f(x), y) + beta KL(f(x) || f(x_adv)), x_adv from the same PGD
                    maximising the KL instead of the cross-entropy (robust.trades_beta);
  pgd_at_generated  pgd_at on batches of which robust.generated_fraction is made inside the step by the
                    class-conditional GAN, labels uniform over the classes (Gowal et al. 2021, "Improving
                    Robustness using Generated Data"; Wang et al. 2023, "Better Diffusion Models Further
                    Improve Adversarial Training"): real and generated images are attacked alike.

The attacks in training run inside the compiled step (`ganjax.attacks.pgd` with early_stop=False: every
image takes every step, and the last iterate is used). They attack the classifier with BatchNorm in
inference mode (its running statistics, `ganjax.attacks.classifier_apply_fn`), as TRADES's reference code
does (model.eval() while it crafts x_adv): each image's loss then depends on that image alone, so the
sign of its gradient is its own steepest ascent and not mixed with its batch-mates' through the batch
statistics; the attack's iterates do not move the running statistics; and the attacked function is the
one the evaluation attacks. The running statistics lag the weights by a few steps (BatchNorm momentum
0.9, `ganjax.models.layers.make_norm`), which matters only in the first steps. The update itself runs the
network in training mode, as every ganjax classifier step does.

After training, each strategy's finish hook attacks the scored validation and test images
(`ganjax.studies.robust.robust_record`) and gives the per-seed robust accuracies to the engine, which adds
them to the record's per_seed and validation entries, where it chooses the best strategy on validation
(names.SELECTION_METRIC["robust"]).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ganjax import losses
from ganjax.attacks import classifier_apply_fn, cross_entropy_loss, pgd, pgd_step_size, to_pixel_scale
from ganjax.state import ModelState, generator_source
from ganjax.steps import ClassifierStepSpec, make_classifier_step, synthesize
from ganjax.studies import long_tail, robust
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.strategies.classic import classifier_strategy

# The config sections that define these strategies' results: the classifier's, the attacks' (training
# and evaluation), and the GAN's (pgd_at_generated trains on its images).
SECTIONS = long_tail.CLASSIFIER_SECTIONS + ("robust",) + long_tail.GAN_SECTIONS
OBJECTIVES = ("pgd_at", "trades")


class AdversarialSpec(NamedTuple):
    """The static part of an adversarial training step (hashable: one compile per spec).

    objective: "pgd_at" (a cross-entropy step on x_adv) or "trades" (`trades_loss`).
    eps, step_size: the PGD budget and step on the [0, 1] pixel scale; steps: PGD steps per update.
    beta: TRADES's weight of the KL term (unused by pgd_at).
    synthetic: num_synthetic images generated per step and their label distribution (0: real only).
    """

    objective: str
    eps: float
    steps: int
    step_size: float
    beta: float = 0.0
    synthetic: ClassifierStepSpec = ClassifierStepSpec()


def kl_divergence(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
    """Per-row KL(p || q) [B] of log-probabilities [B, K]."""
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def kl_to_clean(clean_logits: jax.Array):
    """loss_fn(logits, labels) -> [B] KL(f(x) || f(x')) for `ganjax.attacks.pgd`: TRADES's inner
    maximisation, with f(x) the clean images' (fixed) predictions in batch order."""
    clean_log_probs = jax.nn.log_softmax(jax.lax.stop_gradient(clean_logits))

    def loss_fn(logits, labels):
        del labels  # TRADES's attack needs no label: it pushes the prediction away from the clean one
        return kl_divergence(clean_log_probs, jax.nn.log_softmax(logits))

    return loss_fn


def trades_loss(clean_logits: jax.Array, adversarial_logits: jax.Array, labels: jax.Array, beta: float,
                weights: jax.Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """TRADES's objective (Zhang et al. 2019, eq. 5, as their trades_loss computes it):
    CE(f(x), y) + beta * mean_i KL(f(x_i) || f(x_adv_i)); the gradient flows through both
    distributions. logits [B, K]; labels [B]; weights [B] weigh the cross-entropy (None: all 1).

    Returns:
      (loss, (cross-entropy, mean KL)).
    """
    cross_entropy = losses.cross_entropy(clean_logits, labels, weights)
    kl = jnp.mean(kl_divergence(jax.nn.log_softmax(clean_logits), jax.nn.log_softmax(adversarial_logits)))
    return cross_entropy + beta * kl, (cross_entropy, kl)


def training_batch(state: ModelState, batch: dict, key: jax.Array, spec: AdversarialSpec, source=None) -> dict:
    """The batch an adversarial step trains on.

    batch: images [B_real, H, W, C] float32 in [-1, 1], labels [B_real] int32, weights [B_real].
    With spec.synthetic.num_synthetic N > 0, N images made by `source` (a GeneratorSource, inference
    mode) are appended with weight 1. "adversarial" holds every image's PGD adversarial example
    against `state` in inference mode, within spec.eps (L-inf, [0, 1] pixel scale) of "images".

    Returns:
      {"images", "labels", "weights", "adversarial"}, each with B_real + N rows.
    """
    synthetic_key, attack_key = jax.random.split(key)
    images, labels, weights = batch["images"], batch["labels"], batch["weights"]
    if spec.synthetic.num_synthetic:
        generated, generated_labels = synthesize(source, spec.synthetic, synthetic_key)
        images = jnp.concatenate([images, generated])
        labels = jnp.concatenate([labels, generated_labels])
        weights = jnp.concatenate([weights, jnp.ones(generated_labels.shape, weights.dtype)])
    apply_fn, params = classifier_apply_fn(state)
    loss_fn = kl_to_clean(apply_fn(params, images)) if spec.objective == "trades" else cross_entropy_loss
    adversarial = pgd(apply_fn, params, images, labels, attack_key, eps=spec.eps, steps=spec.steps,
                      step_size=spec.step_size, random_start=True, loss_fn=loss_fn, early_stop=False)
    return {"images": images, "labels": labels, "weights": weights, "adversarial": adversarial}


def trades_update(state: ModelState, batch: dict, key: jax.Array, beta: float) -> tuple[ModelState, dict]:
    """One optimizer step on `trades_loss` of training_batch's clean and adversarial images. Two
    training-mode forwards, clean first, each updating the BatchNorm statistics (as the reference's
    two calls of the model in train mode)."""
    clean_key, adversarial_key = jax.random.split(key)

    def loss_fn(params):
        clean_logits, mutated = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, batch["images"], train=True,
            mutable=["batch_stats"], rngs={"dropout": clean_key})
        adversarial_logits, mutated = state.apply_fn(
            {"params": params, "batch_stats": mutated.get("batch_stats", {})}, batch["adversarial"], train=True,
            mutable=["batch_stats"], rngs={"dropout": adversarial_key})
        loss, (cross_entropy, kl) = trades_loss(clean_logits, adversarial_logits, batch["labels"], beta,
                                                batch["weights"])
        return loss, (clean_logits, mutated.get("batch_stats", {}), cross_entropy, kl)

    (loss, (logits, batch_stats, cross_entropy, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, "cross_entropy": cross_entropy, "kl": kl,
               "accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == batch["labels"])}
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics


def make_adversarial_step(spec: AdversarialSpec):
    """One seed's step (state, batch, key, source) -> (state, metrics): `training_batch`, then a
    cross-entropy step on its adversarial images (pgd_at; metrics' accuracy is on them) or
    `trades_update`. metrics["perturbation"]: the batch's largest L-inf change, [0, 1] pixel scale."""
    if spec.objective not in OBJECTIVES:
        raise ValueError(f"Adversarial objective {spec.objective!r} is unknown; choose one of {OBJECTIVES}.")
    cross_entropy_step = make_classifier_step(ClassifierStepSpec())

    def step(state, batch, key, source=None):
        attack_key, update_key = jax.random.split(key)
        batch = training_batch(state, batch, attack_key, spec, source)
        if spec.objective == "trades":
            state, metrics = trades_update(state, batch, update_key, spec.beta)
        else:
            state, metrics = cross_entropy_step(state, {**batch, "images": batch["adversarial"]}, update_key)
        metrics["perturbation"] = to_pixel_scale(jnp.max(jnp.abs(batch["adversarial"] - batch["images"])))
        return state, metrics

    return step


def generated_split(config) -> tuple[int, int]:
    """(real, generated) images per pgd_at_generated step: round(generated_fraction x batch) generated."""
    batch_size = config.classifier.batch_size
    generated = int(round(config.robust.generated_fraction * batch_size))
    return batch_size - generated, generated


def adversarial_spec(name: str, context: StudyContext) -> AdversarialSpec:
    """The AdversarialSpec of strategy `name` (pgd_at, trades or pgd_at_generated) under context's config."""
    config = context.config
    settings = config.robust
    eps, steps = float(settings.train_eps), int(settings.train_steps)
    step_size = float(settings.train_step_size) or pgd_step_size(eps, steps)
    synthetic = ClassifierStepSpec()
    if name == "pgd_at_generated":
        _, generated = generated_split(config)
        num_classes = context.train_set.num_classes
        synthetic = ClassifierStepSpec(num_synthetic=generated, synthetic_label_probs=(1.0 / num_classes,) * num_classes,
                                       noise_dim=config.model.noise_dim)
    objective = "trades" if name == "trades" else "pgd_at"
    beta = float(settings.trades_beta) if objective == "trades" else 0.0
    return AdversarialSpec(objective, eps, steps, step_size, beta, synthetic)


def make(name: str, context: StudyContext) -> Strategy:
    config = context.config
    plain = long_tail.COMPOSITIONS["plain"]
    if name == "standard":
        strategy = classifier_strategy(name, context, ClassifierStepSpec(), config.classifier.batch_size, plain)
    else:
        spec = adversarial_spec(name, context)
        source, num_real = None, config.classifier.batch_size
        if spec.synthetic.num_synthetic:
            generator = long_tail.trained_generator(context)
            source = generator_source(generator.state, use_ema=generator.use_ema)
            num_real, _ = generated_split(config)
        strategy = classifier_strategy(name, context, spec.synthetic, num_real, plain, shared=source)
        strategy.step_key = ("robust", spec)
        strategy.make_step = lambda: make_adversarial_step(spec)

    def finish(states, context, evaluate, splits):
        return robust.robust_record(context, strategy.classifiers(states), name, splits)

    strategy.finish = finish
    return strategy
