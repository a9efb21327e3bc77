"""acgan: AC-GAN (Odena et al. 2017) with few labels: a real/fake head and a class head, a
class-conditional generator (`ganjax.steps.make_acgan_step`); its samples are judged for
class-conditional accuracy."""

import functools

from ganjax.steps import make_acgan_step
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.few_label import SECTIONS, few_label_strategy  # noqa: F401 (SECTIONS: the engine reads it)


def make(name: str, context: StudyContext) -> Strategy:
    num_classes = context.train_set.num_classes
    return few_label_strategy(name, context, functools.partial(make_acgan_step, num_classes=num_classes))
