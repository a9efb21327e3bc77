"""Pure update steps, `(state, batch, key) -> (state, metrics)`, by purpose: no I/O, no globals.

  common      Batch/Metrics, the generator forward, parameter averages, seeds in one program
              (`over_seeds`) and several steps per call (`make_multi_step`);
  gan         the alternating GAN step;
  classifier  classifier steps, topped up with synthetic images, and the joint GAN + classifiers step;
  few_label   the K+1 GAN, AC-GAN, supervised and virtual adversarial few-label steps.
"""

from ganjax.steps.classifier import (
    ClassifierStepSpec,
    classifier_eval_step,
    classifier_train_step,
    make_classifier_step,
    make_joint_train_step,
    make_multi_seed_step,
    synthesize,
)
from ganjax.steps.common import Batch, Metrics, ema_decay_at, ema_update, generate, make_multi_step, over_seeds
from ganjax.steps.few_label import (
    FewLabelSpec,
    few_label_logits,
    make_acgan_step,
    make_semi_gan_step,
    make_supervised_few_label_step,
    make_pseudo_label_step,
    make_vat_step,
)
from ganjax.steps.gan import discriminator_noise, discriminator_noise_key, make_gan_train_step

__all__ = [
    "Batch", "ClassifierStepSpec", "FewLabelSpec", "Metrics", "classifier_eval_step", "classifier_train_step",
    "discriminator_noise", "discriminator_noise_key", "ema_decay_at", "ema_update", "few_label_logits", "generate",
    "make_acgan_step", "make_classifier_step", "make_gan_train_step", "make_joint_train_step", "make_multi_seed_step",
    "make_multi_step", "make_pseudo_label_step", "make_semi_gan_step", "make_supervised_few_label_step", "make_vat_step", "over_seeds",
    "synthesize",
]
