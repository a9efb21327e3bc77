import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ganjax import classify, data, parallel
from ganjax.config import default_config
from ganjax.models import ResNet, SmallCNN
from ganjax.state import classifier_optimizer, create_classifier_state
from ganjax.steps import classifier_eval_step, classifier_train_step


@pytest.fixture(scope="module")
def digits():
    """(train, test) of scikit-learn's digits at 16x16, 10 classes."""
    return data.load_train_and_test(default_config().data)


@pytest.fixture(scope="module")
def trained(digits):
    """A small CNN trained briefly on digits, shared by the tests that need trained weights."""
    train_set, _ = digits
    return classify.train_classifier(train_set, steps=120, batch_size=64, seed=0, width=16, progress=False)


def _batch(batch_size=32, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.uniform(-1, 1, (batch_size, 16, 16, 1)).astype(np.float32),
        "labels": (np.arange(batch_size) % 4).astype(np.int32),
    }


def _state(module=None, learning_rate=3e-3, **kwargs):
    module = SmallCNN(num_classes=4, width=8) if module is None else module
    return create_classifier_state(module, learning_rate, jax.random.key(0), (16, 16, 1), **kwargs)


@pytest.mark.parametrize(
    "module,optimizer",
    [pytest.param(SmallCNN(num_classes=4, width=8, dropout=0.2), "adam", id="cnn-adam"),
     pytest.param(ResNet(num_classes=4, width=8), "sgd", id="resnet-sgd", marks=pytest.mark.slow)],
)
def test_train_steps_reduce_the_loss_on_a_fixed_batch(module, optimizer):
    state = _state(module, learning_rate=0.05 if optimizer == "sgd" else 3e-3, optimizer=optimizer)
    batch = _batch()
    step = jax.jit(classifier_train_step)
    losses = []
    for index in range(15):
        state, metrics = step(state, batch, jax.random.key(index))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0]
    assert int(state.step) == 15
    assert set(metrics) == {"loss", "accuracy"}


def test_train_step_updates_batch_statistics_and_compiles_once():
    traces = []

    def counted(state, batch, key):
        traces.append(1)
        return classifier_train_step(state, batch, key)

    mesh = parallel.make_mesh(jax.devices()[:1])
    train_step = parallel.jit_step(counted, mesh, batch_axis=0)
    state = parallel.replicate(_state(), mesh)
    initial = jax.device_get(state.batch_stats)
    for index in range(3):
        state, _ = train_step(state, parallel.shard_batch(_batch(seed=index), mesh), jax.random.key(index))
    assert len(traces) == 1
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), initial, state.batch_stats)
    assert max(jax.tree.leaves(moved)) > 0


def test_eval_step_is_deterministic_and_per_example():
    state, _ = jax.jit(classifier_train_step)(_state(), _batch(), jax.random.key(0))
    images = _batch()["images"]
    eval_step = jax.jit(classifier_eval_step)
    logits = eval_step(state, images)
    np.testing.assert_array_equal(logits, eval_step(state, images))
    # Running BatchNorm statistics: an example's logits do not depend on the rest of the batch.
    np.testing.assert_allclose(eval_step(state, images[:5]), logits[:5], rtol=1e-5, atol=1e-5)


def test_example_weights_change_the_loss_as_expected():
    state, batch = _state(), _batch()
    key = jax.random.key(0)
    train_step = jax.jit(classifier_train_step)
    _, plain = train_step(state, batch, key)
    _, scaled = train_step(state, {**batch, "weights": np.full(32, 3.0, np.float32)}, key)
    np.testing.assert_allclose(scaled["loss"], plain["loss"], rtol=1e-5)
    # Zero weight on the second half: the loss is the first half's mean loss.
    half = np.repeat(np.array([1.0, 0.0], np.float32), 16)
    _, weighted = train_step(state, {**batch, "weights": half}, key)
    first_half = {name: value[:16] for name, value in batch.items()}
    logits, _ = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, batch["images"], train=True, mutable=["batch_stats"]
    )
    expected = optax.softmax_cross_entropy_with_integer_labels(logits[:16], first_half["labels"]).mean()
    np.testing.assert_allclose(weighted["loss"], expected, rtol=1e-5)
    assert abs(float(weighted["loss"]) - float(plain["loss"])) > 1e-4


def test_cosine_schedule_decays_to_zero():
    params = {"w": jnp.ones((2, 2))}
    tx = classifier_optimizer("sgd", 0.1, total_steps=3, momentum=0.0)
    opt_state = tx.init(params)
    grads = {"w": jnp.ones((2, 2))}
    updates = []
    for _ in range(4):
        update, opt_state = tx.update(grads, opt_state, params)
        updates.append(float(update["w"][0, 0]))
    np.testing.assert_allclose(updates, [-0.1, -0.075, -0.025, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="optimizer 'lamb'"):
        classifier_optimizer("lamb", 0.1)


def test_train_classifier_learns_digits(digits, trained):
    _, test_set = digits
    logits = classify.predict(trained, data.to_model_range(test_set.images))
    assert logits.shape == (len(test_set), 10)
    assert np.mean(logits.argmax(axis=-1) == test_set.labels) > 0.8


def test_train_classifier_checks_its_inputs(digits):
    train_set, _ = digits
    with pytest.raises(ValueError, match="model 'vit'"):
        classify.train_classifier(train_set, steps=1, batch_size=8, seed=0, model="vit")
    with pytest.raises(ValueError, match="class_weights"):
        classify.train_classifier(train_set, steps=1, batch_size=8, seed=0, class_weights=np.ones(3))
    with pytest.raises(ValueError, match="batch_size"):
        classify.train_classifier(train_set, steps=1, batch_size=100000, seed=0)


def test_predict_pads_the_last_batch(digits, trained):
    _, test_set = digits
    images = data.to_model_range(test_set.images[:23])
    full = classify.predict(trained, images)
    np.testing.assert_allclose(classify.predict(trained, images, batch_size=5), full, rtol=1e-5, atol=1e-5)
    assert classify.predict(trained, images[:0]).shape == (0, 10)
    with pytest.raises(ValueError, match="to_model_range"):
        classify.predict(trained, test_set.images[:4])


def test_save_load_round_trip(tmp_path, digits, trained):
    train_set, test_set = digits
    path = os.fspath(tmp_path / "classifier")
    saved = classify.save_classifier(
        path, trained, {"image_shape": train_set.image_shape, "class_names": train_set.class_names, "note": "digits"}
    )
    state, meta = classify.load_classifier(path)
    assert meta == saved
    assert (meta["model"], meta["width"], meta["num_classes"], meta["image_shape"]) == ("cnn", 16, 10, [16, 16, 1])
    assert meta["note"] == "digits" and len(meta["weights_sha256"]) == 64
    assert int(state.step) == int(trained.step) == 120
    for before, after in zip(jax.tree.leaves((trained.params, trained.batch_stats)), jax.tree.leaves((state.params, state.batch_stats))):
        np.testing.assert_array_equal(before, after)
    images = data.to_model_range(test_set.images[:50])
    np.testing.assert_array_equal(classify.predict(state, images), classify.predict(trained, images))
    # The default optimizer keeps a loaded classifier frozen.
    stepped, _ = jax.jit(classifier_train_step)(state, {"images": images[:8], "labels": test_set.labels[:8]}, jax.random.key(0))
    np.testing.assert_array_equal(jax.tree.leaves(stepped.params)[0], jax.tree.leaves(state.params)[0])


def test_load_classifier_errors(tmp_path, digits, trained):
    train_set, _ = digits
    with pytest.raises(FileNotFoundError, match="No classifier at .*Train and save one"):
        classify.load_classifier(os.fspath(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="not a saved classifier"):
        classify.load_classifier(os.fspath(tmp_path))
    with pytest.raises(ValueError, match="image_shape"):
        classify.save_classifier(os.fspath(tmp_path / "x"), trained, {})
    path = os.fspath(tmp_path / "tampered")
    classify.save_classifier(path, trained, {"image_shape": train_set.image_shape})
    state, _ = classify.load_classifier(path)
    other = state.replace(params=jax.tree.map(lambda p: p + 1.0, state.params))
    classify.save_classifier(path + "_other", other, {"image_shape": train_set.image_shape})
    # Swap in the other weights under the original meta: the hash check notices.
    shutil.rmtree(os.path.join(path, "state"))
    shutil.copytree(os.path.join(path + "_other", "state"), os.path.join(path, "state"))
    with pytest.raises(ValueError, match="sha256"):
        classify.load_classifier(path)


@pytest.mark.slow  # the CNN round trip above covers saving and loading; this adds ResNet's meta fields
def test_resnet_round_trip(tmp_path):
    module = ResNet(num_classes=4, width=4, blocks_per_stage=(1, 2, 1), norm="group")
    state = _state(module)
    path = os.fspath(tmp_path / "resnet")
    classify.save_classifier(path, state, {"image_shape": (16, 16, 1)})
    loaded, meta = classify.load_classifier(path)
    assert meta["blocks_per_stage"] == [1, 2, 1] and meta["norm"] == "group"
    assert classify.describe_classifier(loaded) == classify.describe_classifier(state)
    assert loaded.batch_stats == {}
    for before, after in zip(jax.tree.leaves(state.params), jax.tree.leaves(loaded.params)):
        np.testing.assert_array_equal(before, after)
