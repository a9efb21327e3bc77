"""Adversarial robustness when adversarial training over-fits: 5% of Fashion-MNIST (300 images a class),
where Gowal et al. (2021) expect generated data to pay. standard, pgd_at and pgd_at_generated, whose
generated fraction is chosen on validation from 0, 0.25 and 0.5. The GAN is the regime map's for the same
data (its fashion_5pct cell), trained on the same training part (the engine's validation split is the
same), so it brings no image the classifiers could not see:

    python benchmarks/regime_map.py --workdir workdirs/regime_map --cells fashion_5pct   # the GAN, and the map's cell
    python -m ganjax.experiment --config configs/fashion_mnist_robust_small.py \\
        --workdir workdirs/fashion_mnist_robust_small

(Or set --config.experiment.generator_workdir="" to train the GAN in WORKDIR/gan, 4,000 steps.)

The full-data study (configs/fashion_mnist_robust.py) gives every strategy 2.4 epochs, too few for
robust over-fitting; here the same 2,000 steps at batch 64 are 47 epochs of the 2,700-image training part
(300 images a class minus the 10% validation split). Judged by PGD-20 and APGD-CE-100 at L-inf 0.1 on 1,000
test and 300 validation images (all of the validation split); no extra budgets, AdvGAN or Defense-GAN.

Budget on 2 CPU cores: measured in BENCHMARKS.md.
"""

import os

from ganjax.config import load_config


def get_config():
    here = os.path.dirname(os.path.abspath(__file__))
    config = load_config(os.path.join(here, "regime_map.py"))  # data, GAN and classifier of the map
    config.data.subset = "balanced"
    config.data.images_per_class = 300
    config.experiment.study = "robust"
    config.experiment.strategies = "standard,pgd_at,pgd_at_generated"
    config.experiment.grid = "robust.generated_fraction=0,0.25,0.5"
    config.experiment.eval_batch_size = 500
    config.experiment.generator_workdir = "workdirs/regime_map/fashion_5pct-cnn/gan"
    robust = load_config(os.path.join(here, "fashion_mnist_robust.py")).robust
    config.robust = robust
    config.robust.num_test = 1000
    config.robust.num_validation = 300
    config.robust.extra_budgets = ""
    config.robust.advgan_steps = 0
    return config
