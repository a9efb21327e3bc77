"""Mesh, shardings and multi-host start-up. One code path from one device to many hosts.

The state is replicated, the batch is sharded on the mesh axis 'data', and `jax.jit` with
these shardings partitions the step (data parallelism; gradients are all-reduced by XLA).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """Starts jax.distributed when `config.parallel.coordinator_address` is set.

    On Cloud TPU and SLURM/MPI clusters an empty address with num_processes > 1 lets JAX
    detect the cluster itself.
    """
    parallel = config.parallel
    if not parallel.coordinator_address and parallel.num_processes == 1:
        return
    if jax.distributed.is_initialized():
        return
    kwargs = {}
    if parallel.coordinator_address:
        kwargs = dict(
            coordinator_address=parallel.coordinator_address,
            num_processes=parallel.num_processes,
            process_id=parallel.process_id,
        )
    jax.distributed.initialize(**kwargs)
    logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: all devices of all processes) named 'data'.

    Auto axis types: XLA's sharding propagation places intermediates such as noise made
    inside the step, which keeps the step free of sharding annotations.
    """
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
    """Shards axis `batch_axis` of an array over 'data'."""
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, key: str = "train.batch_size") -> None:
    """Raises ValueError naming config key `key` if `batch_size` does not split over the mesh."""
    if batch_size % mesh.size:
        raise ValueError(
            f"config.{key}={batch_size} does not split over {mesh.size} devices; "
            f"use a multiple of {mesh.size}."
        )


def shard_batch(host_batch: dict[str, np.ndarray], mesh: Mesh, batch_axis: int = 0) -> dict[str, jax.Array]:
    """Host-local numpy batch -> global jax.Arrays sharded on 'data' along `batch_axis`.

    Each process passes its own slice of the global batch (see ganjax.data.process_slice).
    """
    sharding = batch_sharding(mesh, batch_axis)
    return {
        name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for name, value in host_batch.items()
    }


def shard_global_batch(global_batch: dict[str, np.ndarray], mesh: Mesh, batch_axis: int = 0) -> dict[str, jax.Array]:
    """A global numpy batch that every process built identically -> global jax.Arrays sharded
    on 'data': each process contributes only its slice (`ganjax.data.process_slice`)."""
    from ganjax.data import process_slice

    local = process_slice(dict(global_batch), jax.process_index(), jax.process_count(), axis=batch_axis)
    return shard_batch(local, mesh, batch_axis)


def map_in_chunks(
    apply_chunk: Callable[[jax.Array], jax.Array], images: np.ndarray, batch_size: int, mesh: Mesh,
    output_axis: int = 0,
) -> list[np.ndarray]:
    """`apply_chunk` over images [N, ...] in fixed-size chunks sharded over `mesh`.

    The chunk size is rounded up to a multiple of the mesh size (and shrunk to N when N is
    small); the last chunk is padded with zeros and its padding dropped from the output along
    `output_axis`, so `apply_chunk` compiles once. Returns the outputs per chunk, as numpy,
    for the caller to concatenate along output_axis (an empty list when N is 0).
    """
    batch_size = -(-min(batch_size, max(len(images), 1)) // mesh.size) * mesh.size
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        padding = batch_size - len(chunk)
        if padding:
            chunk = np.concatenate([chunk, np.zeros((padding, *chunk.shape[1:]), chunk.dtype)])
        output = np.asarray(apply_chunk(shard_global_batch({"images": chunk}, mesh)["images"]))
        outputs.append(np.take(output, np.arange(batch_size - padding), axis=output_axis))
    return outputs


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of `tree` on all devices of `mesh`."""
    return jax.device_put(tree, replicated(mesh))


def jit_step(step_fn: Callable, mesh: Mesh, batch_axis: int = 0) -> Callable:
    """jit `step_fn(state, batch, key) -> (state, metrics)` with the state donated and replicated."""
    return jax.jit(
        step_fn,
        in_shardings=(replicated(mesh), batch_sharding(mesh, batch_axis), replicated(mesh)),
        out_shardings=(replicated(mesh), replicated(mesh)),
        donate_argnums=(0,),
    )
