"""Fuzzed config overrides and command lines: a valid config or a one-line ValueError naming the key.

Run with `--hypothesis-show-statistics` to see how many examples were accepted and refused.
"""

import math
import os

import ml_collections
import pytest
from conftest import REPO, run_python
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st

from ganjax.config import apply_overrides, check_override_flags, default_config, flatten, validate_config

FUZZ = settings(max_examples=50, deadline=None, database=None, derandomize=True,
                 phases=[Phase.explicit, Phase.generate, Phase.shrink])  # no database, no patch files
SCHEMA = flatten(default_config())
NUMERIC_KEYS = sorted(k for k, v in SCHEMA.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
# Keys whose documented values include negative numbers (see default_config's comments).
NEGATIVE_ALLOWED = {"semi.feature_layer": range(-5, 0), "experiment.synthetic_fraction": (-1,)}
DIGITS_CONFIG = os.path.join(REPO, "configs", "digits.py")


def _schema_types_hold(config: ml_collections.ConfigDict) -> None:
    for name, value in flatten(config).items():
        expected = type(SCHEMA[name])
        assert isinstance(value, expected) or (expected is float and type(value) is int), (name, value)
        if isinstance(value, float):
            assert math.isfinite(value), name


_value_texts = st.one_of(
    st.integers(0, 64).map(str),
    st.floats(0, 1).map(str),
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1", "1e400", "1e-9", "true", "no", "maybe", "", " ", "1,2",
                     "99999999999999999999", "-0", "0x10", "１"]),
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)
_keys = st.one_of(
    st.sampled_from(sorted(SCHEMA)),
    st.sampled_from(sorted(SCHEMA)),
    st.sampled_from(sorted(SCHEMA)),
    st.sampled_from(sorted(SCHEMA)).map(lambda key: key + "x"),
    st.sampled_from(["train", "data.", ".steps", "", "train.steps.x", "TRAIN.STEPS"]),
    st.text(max_size=10),
)


def _nearby_texts(default) -> list[str]:
    """The default's text and, for numbers, the text of twice it."""
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return [str(default), str(default * 2)]
    return [str(default)]


# A schema key with its default or a nearby value, so that some whole override lists are valid.
_plausible = st.sampled_from(sorted(SCHEMA)).flatmap(
    lambda key: st.tuples(st.just(key), st.just("="), st.sampled_from(_nearby_texts(SCHEMA[key]))))


@FUZZ
@given(assignments=st.lists(
    st.one_of(_plausible, _plausible, st.tuples(_keys, st.sampled_from(["=", "=", ""]), _value_texts)),
    min_size=1, max_size=3))
def test_overrides_give_a_valid_config_or_name_the_key(assignments):
    texts = [f"{key}{separator}{value}" for key, separator, value in assignments]
    try:
        config = apply_overrides(default_config(), texts)
    except ValueError as error:
        message = str(error)
        assert "\n" not in message
        named = [text.partition("=")[0].strip() for text in texts if "=" in text] + texts
        assert any(repr(name) in message or ("." in name and name in message) for name in named), message
        event("refused")
        return
    _schema_types_hold(config)
    validate_config(config)
    event("accepted")


@FUZZ
@given(
    key=st.sampled_from(sorted(SCHEMA)),
    value=st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
)
def test_a_wrongly_typed_or_out_of_range_value_is_refused_by_key(key, value):
    flat = dict(SCHEMA, **{key: value})
    tree = {}
    for name, leaf in flat.items():
        section, _, leaf_key = name.rpartition(".")
        (tree.setdefault(section, {}) if section else tree)[leaf_key] = leaf
    config = ml_collections.ConfigDict(tree)
    try:
        validate_config(config)
    except ValueError as error:
        assert key in str(error) or "experiment.grid" in str(error), str(error)
        event("refused")
        return
    _schema_types_hold(config)
    event("accepted")


@FUZZ
@given(key=st.sampled_from(NUMERIC_KEYS), magnitude=st.one_of(st.integers(1, 2**40), st.floats(1e-6, 1e30)))
def test_negative_numbers_are_refused_where_no_key_documents_them(key, magnitude):
    value = -magnitude if isinstance(SCHEMA[key], float) else -max(1, int(magnitude))
    if value in NEGATIVE_ALLOWED.get(key, ()):
        return
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        apply_overrides(default_config(), [f"{key}={value}"])


@pytest.mark.parametrize("key", [k for k in NUMERIC_KEYS if isinstance(SCHEMA[k], float)])
@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused(key, text):
    with pytest.raises(ValueError, match=rf"'{key}' must be a finite number"):
        apply_overrides(default_config(), [f"{key}={text}"])


def test_integers_beyond_32_bits_are_refused():
    with pytest.raises(ValueError, match=r"'train.steps' is 2147483648, outside the 32-bit integers"):
        apply_overrides(default_config(), ["train.steps=2147483648"])


_flag_tokens = st.one_of(
    st.tuples(st.sampled_from(["--config.", "-config.", "--noconfig."]), _keys, st.sampled_from(["=", ""]),
              _value_texts).map("".join),
    st.sampled_from(["--config", "-config", f"--config={DIGITS_CONFIG}", "--config=missing.py", DIGITS_CONFIG,
                     f"{DIGITS_CONFIG}:arg", "missing.py", "--", "---config.x=1", "--workdir", "/tmp/w", "--foo"]),
    st.text(max_size=8),
)


@FUZZ
@given(argv=st.lists(_flag_tokens, max_size=5))
def test_command_line_overrides_are_checked_before_absl(argv):
    try:
        check_override_flags(argv)
    except ValueError as error:
        message = str(error)
        assert "\n" not in message
        assert message.startswith("Config key "), message
        event("refused")
        return
    flags = argv[: argv.index("--")] if "--" in argv else argv
    for token in flags:
        if token.startswith(("-config.", "--config.")):
            assert token.lstrip("-").partition("=")[0][len("config."):] in SCHEMA, token
    event("accepted")


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--foo=1"], "FATAL Flags parsing error: Unknown command line flag 'foo'"),
        (["--config.train.steps=abc"], "FATAL Flags parsing error: flag --config.train.steps=abc"),
        (["-config.train.stepz=3"], "ganjax.train: error: Config key 'train.stepz' is unknown"),
        (["--config.gan.ema_decay=nan"], "ganjax.train: error: Config key 'gan.ema_decay' must be a finite number"),
    ],
)
def test_train_cli_refuses_bad_flags_without_a_traceback(tmp_path, arguments, expected):
    argv = ["ganjax.train", "--config", DIGITS_CONFIG, "--workdir", os.fspath(tmp_path), *arguments]
    code = f"import runpy, sys; sys.argv = {argv!r}; runpy.run_module('ganjax.train', run_name='__main__')"
    result = run_python(code, env_extra={"GANJAX_COMPILATION_CACHE": "off"}, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert expected in result.stderr, result.stderr

