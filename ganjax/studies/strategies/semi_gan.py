"""semi_gan: the semi-supervised K+1 GAN (Salimans et al. 2016): the discriminator's K class
logits with the fake class implicit, a feature-matching generator (`ganjax.steps.make_semi_gan_step`)."""

from ganjax.steps import make_semi_gan_step
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.few_label import SECTIONS, few_label_strategy  # noqa: F401 (SECTIONS: the engine reads it)


def make(name: str, context: StudyContext) -> Strategy:
    return few_label_strategy(name, context, make_semi_gan_step)
