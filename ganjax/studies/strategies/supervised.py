"""supervised and supervised_augment: the few-label baselines, the same network trained by
cross-entropy on the labelled images alone, without or with classic augmentation
(`ganjax.steps.make_supervised_few_label_step`)."""

from ganjax.steps import make_supervised_few_label_step
from ganjax.studies.engine import Strategy, StudyContext
from ganjax.studies.few_label import SECTIONS, few_label_strategy  # noqa: F401 (SECTIONS: the engine reads it)


def make(name: str, context: StudyContext) -> Strategy:
    return few_label_strategy(name, context, make_supervised_few_label_step)
