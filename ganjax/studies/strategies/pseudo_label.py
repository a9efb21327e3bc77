"""pseudo_label: confidence-thresholded pseudo-labels (FixMatch's rule, Sohn et al. 2020), a classic
semi-supervised alternative to the K+1 GAN on the same network, labelled and unlabelled batches
(`ganjax.steps.make_pseudo_label_step`)."""

from typing import Callable

from ganjax.steps import FewLabelSpec, make_pseudo_label_step
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.few_label import SECTIONS, few_label_strategy  # noqa: F401 (SECTIONS: the engine reads it)


def make_step(spec: FewLabelSpec, num_classes: int) -> Callable:
    """One seed's step (state, batch, key) -> (state, metrics) (ganjax.studies.few_label.make_step)."""
    return make_pseudo_label_step(spec)


def make(name: str, context: StudyContext) -> Strategy:
    return few_label_strategy(name, context)
