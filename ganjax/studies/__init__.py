"""Studies: tables of strategies run by one engine (ganjax.studies.engine).

  long_tail   GAN-augmented recognition on long-tailed data (data.subset other than "few_label");
  few_label   the discriminator as the classifier when labels are few (data.subset "few_label");
  repair      damaged images repaired (classic repairs, generator inversion) and judged by a
              classifier (experiment.study "repair");
  robust      adversarial training (PGD-AT, TRADES, PGD-AT with generated images) judged by strong
              attacks (experiment.study "robust").

From Python: `ganjax.studies.run(config, workdir)`, or `ganjax.run_experiment`.
"""

from __future__ import annotations

import importlib


def study_module(config):
    """The module of the study that `config` runs (experiment.study, or by data.subset)."""
    from ganjax.names import study_of

    return importlib.import_module(f"ganjax.studies.{study_of(config.data.subset, config.experiment.study)}")


def run(config, workdir: str, progress: bool = True) -> dict:
    """Runs config's study in `workdir`; returns the report (see ganjax.report)."""
    from ganjax.studies.engine import run_study

    return run_study(study_module(config), config, workdir, progress=progress)
