"""semi_gan: the semi-supervised K+1 GAN (Salimans et al. 2016): the discriminator's K class
logits with the fake class implicit, a feature-matching generator (`ganjax.steps.make_semi_gan_step`)."""

from typing import Callable

from ganjax.steps import FewLabelSpec, make_semi_gan_step
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.few_label import SECTIONS, few_label_strategy  # noqa: F401 (SECTIONS: the engine reads it)


def make_step(spec: FewLabelSpec, num_classes: int) -> Callable:
    """One seed's step (state, batch, key) -> (state, metrics) (ganjax.studies.few_label.make_step)."""
    return make_semi_gan_step(spec)


def make(name: str, context: StudyContext) -> Strategy:
    return few_label_strategy(name, context)
