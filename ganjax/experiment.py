"""Run a study: every strategy of config.experiment.strategies over config.experiment.num_seeds seeds.

    python -m ganjax.experiment --config configs/fashion_mnist_lt.py --workdir DIR \
        [--config.experiment.num_seeds=3 ...]

experiment.study names the study: "repair" (ganjax.studies.repair) or "robust"
(ganjax.studies.robust); "" chooses by data.subset: "few_label" runs the few-label study
(ganjax.studies.few_label), any other subset the long-tail study (ganjax.studies.long_tail). All run
on the one engine (ganjax.studies.engine).
Writes DIR/report.json, DIR/report.md, DIR/confusion_matrix.png, DIR/per_class_recall.png and
DIR/strategies/NAME.json per finished strategy (a rerun reuses those made with the same
defining config). From Python: `ganjax.experiment.run_experiment(config, workdir)`.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from ganjax import names, parallel, report, studies
from ganjax.config import validate_config


def run_experiment(config: ml_collections.ConfigDict, workdir: str, progress: bool = True) -> dict[str, Any]:
    """Runs config's study in `workdir`; writes and returns the report (see ganjax.report)."""
    validate_config(config)
    parallel.initialize_distributed(config)
    return studies.run(config, workdir, progress=progress)


def _print_report(result, workdir: str) -> None:
    print(report.markdown_table(result, names.STUDY_METRICS[result["meta"]["study"]]))
    print(f"wrote {os.path.join(workdir, report.REPORT_JSON)}")


if __name__ == "__main__":
    from ganjax.cli import run_config_program

    run_config_program("experiment", run_experiment, "Directory for the report, plots and the GAN.", _print_report)
