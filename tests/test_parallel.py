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
(one_state, one_metrics), (four_state, four_metrics) = results[1], results[4]
leaf_diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
print(json.dumps({
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
