"""pseudo_label: confidence-thresholded pseudo-labels (FixMatch's rule, Sohn et al. 2020), a classic
semi-supervised alternative to the K+1 GAN on the same network, labelled and unlabelled batches
(`ganjax.steps.make_pseudo_label_step`)."""

from ganjax.steps import make_pseudo_label_step
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.few_label import SECTIONS, few_label_strategy  # noqa: F401 (SECTIONS: the engine reads it)


def make(name: str, context: StudyContext) -> Strategy:
    return few_label_strategy(name, context, make_pseudo_label_step)
