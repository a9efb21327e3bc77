"""Multi-host data parallelism: two processes on 127.0.0.1 (jax.distributed, gloo) train the
same model as one process, and checkpoint it together."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO
from ganjax import checkpoint
from ganjax.state import create_gan_state

WORKER = r"""
import json, sys
import jax
from ganjax.config import default_config
from ganjax.train import train_and_evaluate
process_id, num_processes, port, workdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
config = default_config()
config.data.image_size = 16
config.model.noise_dim, config.model.embed_dim = 16, 8
config.model.generator_width = config.model.discriminator_width = 8
config.train.steps, config.train.batch_size = 4, 16
config.train.log_every, config.train.sample_every, config.train.checkpoint_every = 1, 2, 2
if num_processes > 1:
    config.parallel.coordinator_address = f"127.0.0.1:{port}"
    config.parallel.num_processes, config.parallel.process_id = num_processes, process_id
last = train_and_evaluate(config, workdir)
print(json.dumps({"process_count": jax.process_count(), "devices": jax.device_count(), "last": last}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(workdir, num_processes, port, env):
    return [
        subprocess.Popen([sys.executable, "-c", WORKER, str(rank), str(num_processes), port, workdir], env=env,
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in range(num_processes)
    ]


def _reports(workers):
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    return [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_two_devices(tmp_path, tiny_config):
    """Two hosts of one device each must equal one host of two devices: the same program,
    with the batch split across processes and gradients all-reduced over gloo.

    (Against a one-device run the first step agrees to 1e-7; over several GAN steps f32
    rounding differences from the different per-device reductions grow, as they would
    between any two device counts, so the exact reference is the same mesh shape.)
    """
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    two_hosts, one_host = str(tmp_path / "two_hosts"), str(tmp_path / "one_host")
    reports = _reports(_launch(two_hosts, 2, str(_free_port()), env))
    assert all(r["process_count"] == 2 and r["devices"] == 2 for r in reports)
    reference_env = dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    (reference,) = _reports(_launch(one_host, 1, "0", reference_env))
    assert reference["process_count"] == 1 and reference["devices"] == 2

    tiny_config.model.embed_dim = 8
    template = create_gan_state(tiny_config, 10, (16, 16, 1), jax.random.key(0))
    _, two_state = checkpoint.restore_state(two_hosts, template)
    _, one_state = checkpoint.restore_state(one_host, template)
    difference = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                     for a, b in zip(jax.tree.leaves(two_state), jax.tree.leaves(one_state)))
    assert difference < 1e-6
    steps = [json.loads(line)["step"] for line in open(os.path.join(two_hosts, "metrics.jsonl"))]
    assert steps == [1, 2, 3, 4]  # written once, by process 0
    assert reports[0]["last"]["d_loss"] == pytest.approx(reference["last"]["d_loss"], abs=1e-6)
