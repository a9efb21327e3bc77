"""acgan: AC-GAN (Odena et al. 2017) with few labels: a real/fake head and a class head, a
class-conditional generator (`ganjax.steps.make_acgan_step`); its samples are judged for
class-conditional accuracy."""

from typing import Callable

from ganjax.steps import FewLabelSpec, make_acgan_step
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.few_label import SECTIONS, few_label_strategy  # noqa: F401 (SECTIONS: the engine reads it)


def make_step(spec: FewLabelSpec, num_classes: int) -> Callable:
    """One seed's step (state, batch, key) -> (state, metrics) (ganjax.studies.few_label.make_step)."""
    return make_acgan_step(spec, num_classes)


def make(name: str, context: StudyContext) -> Strategy:
    return few_label_strategy(name, context)
