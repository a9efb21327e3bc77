"""vat: virtual adversarial training (Miyato et al. 2018), the classic semi-supervised alternative to the
K+1 GAN on the same network, labelled and unlabelled batches (`ganjax.steps.make_vat_step`)."""

from typing import Callable

from ganjax.steps import FewLabelSpec, make_vat_step
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.few_label import SECTIONS, few_label_strategy  # noqa: F401 (SECTIONS: the engine reads it)


def make_step(spec: FewLabelSpec, num_classes: int) -> Callable:
    """One seed's step (state, batch, key) -> (state, metrics) (ganjax.studies.few_label.make_step)."""
    return make_vat_step(spec)


def make(name: str, context: StudyContext) -> Strategy:
    return few_label_strategy(name, context)
