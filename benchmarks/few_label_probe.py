"""Where does a few-label strategy go on a few-label config? One seed of its step (`vat`, `pseudo_label`,
`supervised`, `semi_gan`, ...: ganjax.names.FEW_LABEL_STRATEGIES), its classifier's accuracy on held-out
*training* images (outside the labelled subset; neither the validation split nor the test split) every --every
steps, beside the step's losses: a probe for choosing their settings, not a result.

    python benchmarks/few_label_probe.py --strategy vat --epsilon 4 --noise 0 --steps 2001
    python benchmarks/few_label_probe.py --strategy pseudo_label --set semi.pseudo_label_threshold=0.95

--epsilon sets semi.vat_epsilon (vat; default: the config's), --noise sets semi.input_noise and
semi.hidden_noise (default: the config's); --set KEY=VALUE overrides more. The labelled subset is drawn into
--workdir (default: a temporary directory) as the study would.
"""

from __future__ import annotations

import argparse
import tempfile

import jax
import jax.numpy as jnp
import numpy as np


def main(argv=None) -> int:
    from ganjax import data
    from ganjax.config import apply_overrides, load_config, validate_config
    from ganjax.names import FEW_LABEL_STRATEGIES
    from ganjax.steps import few_label_logits
    from ganjax.studies import few_label

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/fashion_mnist_semi.py")
    parser.add_argument("--strategy", choices=FEW_LABEL_STRATEGIES, default="vat")
    parser.add_argument("--epsilon", type=float, default=None, help="semi.vat_epsilon (vat)")
    parser.add_argument("--noise", type=float, default=None, help="semi.input_noise and semi.hidden_noise")
    parser.add_argument("--steps", type=int, default=2001)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--held-out", type=int, default=2000, help="held-out training images judged")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    overrides = ["experiment.num_seeds=1"]
    if args.epsilon is not None:
        overrides.append(f"semi.vat_epsilon={args.epsilon}")
    if args.noise is not None:
        overrides += [f"semi.input_noise={args.noise}", f"semi.hidden_noise={args.noise}"]
    config = apply_overrides(load_config(args.config), overrides + args.set)
    validate_config(config)
    workdir = args.workdir or tempfile.mkdtemp(prefix="few_label_probe_")
    train_set, _ = data.load_train_and_test(config.data, workdir=workdir)  # the test split is not used
    labelled = few_label.labelled_indices(workdir, train_set, config)
    outside = np.setdiff1d(np.arange(len(train_set)), labelled)
    held = outside[np.linspace(0, len(outside) - 1, min(args.held_out, len(outside))).astype(int)]
    images, labels = data.to_model_range(train_set.images[held]), train_set.labels[held]
    batches = few_label.FewLabelBatches(train_set, labelled, config, args.strategy)
    state = few_label.init_state(args.strategy, config, train_set.num_classes,
                                 jnp.asarray(few_label.init_images(train_set, config)), jax.random.key(args.seed))
    step = jax.jit(few_label.make_step(args.strategy, few_label.step_spec(args.strategy, config),
                                       train_set.num_classes))
    step_key = jax.random.key(args.seed + 1)
    print(f"config={args.config} strategy={args.strategy} overrides={overrides + args.set} "
          f"input_noise={config.semi.input_noise} hidden_noise={config.semi.hidden_noise} held_out={len(held)}")
    for index in range(args.steps):
        batch = {name: value[0] for name, value in batches(index).items()}  # seed 0 of the batches
        state, metrics = step(state, batch, jax.random.fold_in(step_key, index))
        if index % args.every == 0 or index == args.steps - 1:
            accuracy = float(np.mean(np.argmax(np.asarray(few_label_logits(few_label.classifier_of(state), images)), -1) == labels))
            print(f"step={index} held_out_accuracy={accuracy:.3f} " +
                  " ".join(f"{name}={float(value):.4f}" for name, value in metrics.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
