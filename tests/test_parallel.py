"""Data parallelism: N devices must compute the same step as one device."""

import json

import pytest

from conftest import run_python

EQUIVALENCE = r"""
import json, jax, jax.numpy as jnp, numpy as np
from ganjax import parallel, steps
from ganjax.config import default_config
from ganjax.state import create_gan_state
assert jax.device_count() == 4, jax.devices()
config = default_config()
config.model.noise_dim, config.model.embed_dim = 16, 8
config.model.generator_width = config.model.discriminator_width = 8
config.model.generator_norm = "batch"
config.gan.r1_gamma = 1.0
config.gan.n_critic = 2
config.train.batch_size = 32
rng = np.random.default_rng(0)
batches = [{"images": rng.uniform(-1, 1, (2, 32, 16, 16, 1)).astype(np.float32),
            "labels": rng.integers(0, 10, (2, 32)).astype(np.int32)} for _ in range(3)]
results = {}
for count in (1, 4):
    mesh = parallel.make_mesh(jax.devices()[:count])
    train_step = parallel.jit_step(steps.make_gan_train_step(config), mesh, batch_axis=1)
    state = parallel.replicate(create_gan_state(config, 10, (16, 16, 1), jax.random.key(0)), mesh)
    for index, host_batch in enumerate(batches):
        batch = parallel.shard_batch(host_batch, mesh, batch_axis=1)
        assert len(batch["images"].sharding.device_set) == count
        state, metrics = train_step(state, batch, jax.random.key(index))
    results[count] = jax.device_get((state, metrics))
# train.steps_per_call > 1: the three steps in one lax.scan call, batches [K, n_critic, B, ...] sharded on axis 2.
from ganjax.steps import make_multi_step
multi_step = parallel.jit_step(make_multi_step(steps.make_gan_train_step(config)), mesh, batch_axis=2)
state = parallel.replicate(create_gan_state(config, 10, (16, 16, 1), jax.random.key(0)), mesh)
stacked = parallel.shard_batch({name: np.stack([b[name] for b in batches]) for name in batches[0]}, mesh, batch_axis=2)
state, metrics = multi_step(state, stacked, jnp.stack([jax.random.key(index) for index in range(len(batches))]))
scanned = jax.device_get((state, jax.tree.map(lambda value: value[-1], metrics)))
(one_state, one_metrics), (four_state, four_metrics) = results[1], results[4]
leaf_diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
print(json.dumps({
    "scanned": leaf_diff(results[4], scanned),
    "params": leaf_diff((one_state.generator.params, one_state.discriminator.params, one_state.generator_ema),
                        (four_state.generator.params, four_state.discriminator.params, four_state.generator_ema)),
    "batch_stats": leaf_diff(one_state.generator.batch_stats, four_state.generator.batch_stats),
    "metrics": leaf_diff(one_metrics, four_metrics),
}))
"""


@pytest.mark.slow
def test_four_devices_equal_one_device():
    result = run_python(EQUIVALENCE, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert result.returncode == 0, result.stderr[-3000:]
    differences = json.loads(result.stdout.strip().splitlines()[-1])
    # BatchNorm statistics are over the global batch under jit, so they match too.
    assert differences["params"] < 1e-5, differences
    assert differences["batch_stats"] < 1e-5, differences
    assert differences["metrics"] < 1e-5, differences
    assert differences["scanned"] < 1e-6, differences  # K steps in one scan call equal K calls on 4 devices


SEMI_EQUIVALENCE = r"""
import json, tempfile, jax, jax.numpy as jnp, numpy as np
from ganjax import parallel
from ganjax.config import load_config
from ganjax.studies import engine, few_label
assert jax.device_count() == 4, jax.devices()
config = load_config("digits_semi")
config.semi.generator = "dcgan"  # BatchNorm over the global batch, convolutions unrolled over seeds
config.model.generator_width, config.model.embed_dim = 8, 4
rng = np.random.default_rng(0)
images = rng.uniform(-1, 1, (2, 8, 16, 16, 1)).astype(np.float32)
host_batch = {"labelled_images": images, "labels": rng.integers(0, 10, (2, 8)).astype(np.int32),
              "unlabelled_images": images[:, ::-1].copy(),
              "matching_images": images[:, :, ::-1].copy()}  # semi.separate_matching_batch's second batch
results = {}
with tempfile.TemporaryDirectory() as workdir:
    for strategy in ("semi_gan", "acgan"):
        for count in (1, 4):
            mesh = parallel.make_mesh(jax.devices()[:count])
            plan = engine.build_strategy(strategy, few_label.prepare(config, workdir, mesh, progress=False))
            assert not plan.vectorize  # the DCGAN generator's convolutions: seeds unrolled
            step = engine.compiled_step(plan, mesh, 1)
            keys = jax.random.split(jax.random.key(0), 2)
            states = parallel.replicate(plan.init(keys), mesh)
            for index in range(3):
                batch = parallel.shard_batch(host_batch, mesh, batch_axis=1)
                assert len(batch["labelled_images"].sharding.device_set) == count
                states, metrics = step(states, batch, jax.random.split(jax.random.key(index + 1), 2), None)
            results[(strategy, count)] = jax.device_get((states.generator.params, states.generator.batch_stats,
                                                         states.discriminator.params, metrics))
leaf_diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
print(json.dumps({s: leaf_diff(results[(s, 1)], results[(s, 4)]) for s in ("semi_gan", "acgan")}))
"""


@pytest.mark.slow
def test_few_label_steps_four_devices_equal_one_device():
    result = run_python(SEMI_EQUIVALENCE, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert result.returncode == 0, result.stderr[-3000:]
    differences = json.loads(result.stdout.strip().splitlines()[-1])
    assert max(differences.values()) < 1e-4, differences
