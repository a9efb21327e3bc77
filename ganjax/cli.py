"""The one command-line shape of ganjax's config-driven programs (train, experiment):

    python -m ganjax.PROGRAM --config configs/NAME.py --workdir DIR [--config.KEY=VALUE ...]

--config takes a config file or the name of a shipped one (`--config digits`, from any directory).
Ctrl-C stops training after the step in flight and says in one line which checkpoint a rerun resumes from.

Bad input (an unknown key, a missing dataset, a mismatched or damaged checkpoint) and a full
disk end in one line naming the problem, not a traceback. Every ganjax command turns on JAX's persistent
compilation cache (`enable_compilation_cache`), so a rerun skips compiling its big steps.
"""

from __future__ import annotations

import errno
import logging
import os
import shlex
import sys
from typing import Any, Callable

import ml_collections

from ganjax.config import check_override_flags, find_config_file

USER_ERRORS = (ValueError, FileNotFoundError, ImportError)
CACHE_ENV = "GANJAX_COMPILATION_CACHE"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "ganjax", "jax_compilation_cache")
CACHE_OFF = ("off", "0", "none", "false")


def enable_compilation_cache(path: str | None = None, min_compile_seconds: float = 1.0) -> str | None:
    """Turns on JAX's persistent compilation cache; returns its directory, or None if off.

    The directory is `path`, else $GANJAX_COMPILATION_CACHE, else ~/.cache/ganjax/
    jax_compilation_cache; "off" turns it off. A directory already set with JAX's own
    JAX_COMPILATION_CACHE_DIR or jax.config is kept. Programs that took at least
    min_compile_seconds to compile are stored. Call it before the first compilation.
    """
    import jax

    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    path = path or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    if path.strip().lower() in CACHE_OFF:
        return None
    path = os.path.expanduser(path)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    return path


def run_config_program(
    program: str,
    run: Callable[[ml_collections.ConfigDict, str], Any],
    workdir_help: str,
    report: Callable[[Any, str], None] | None = None,
) -> None:
    """Parses --config/--workdir with absl + ml_collections, then calls `run(config, workdir)`
    and `report(result, workdir)`."""
    from absl import app, flags
    from absl import logging as absl_logging
    from ml_collections import config_flags

    from ganjax.loop import Interrupted

    rerun = shlex.join(["python", "-m", f"ganjax.{program}", *sys.argv[1:]])
    try:
        sys.argv[1:] = resolve_config_flag(sys.argv[1:])
        check_override_flags(sys.argv[1:])
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"ganjax.{program}: error: {error}") from None

    config_flag = config_flags.DEFINE_config_file(
        "config", None, "Experiment config: a file, or a shipped config's name (e.g. digits).", lock_config=True
    )
    workdir_flag = flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])

    def main(argv: list[str]) -> None:
        del argv
        absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file it writes at INFO
        logging.getLogger("ganjax").setLevel(logging.INFO)
        enable_compilation_cache()
        try:
            result = run(config_flag.value, workdir_flag.value)
        except USER_ERRORS as error:
            raise SystemExit(f"ganjax.{program}: error: {error}") from None
        except OSError as error:
            if error.errno != errno.ENOSPC:  # a full disk is the user's to fix (checkpoint.DiskFullError)
                raise
            raise SystemExit(f"ganjax.{program}: error: {error}") from None
        except Interrupted as interrupted:  # Ctrl-C in the step loop, which saved the step reached
            print(f"ganjax.{program}: stopped by Ctrl-C at step {interrupted.step}; a rerun resumes from "
                  f"{interrupted.saved}: {rerun}", file=sys.stderr)
            raise SystemExit(130) from None
        except KeyboardInterrupt:
            print(f"ganjax.{program}: stopped by Ctrl-C; to start it again: {rerun}", file=sys.stderr)
            raise SystemExit(130) from None
        if report is not None:
            report(result, workdir_flag.value)

    app.run(main)


def resolve_config_flag(argv: list[str]) -> list[str]:
    """argv with the value of --config (absl's forms: --config=V, --config V, -config...) made a
    config file's path by `find_config_file`: a shipped config's name works too, and a missing file
    is one FileNotFoundError instead of config_flags' traceback."""
    resolved = list(argv)
    for index, argument in enumerate(argv):
        if argument == "--":  # absl's end of flags
            break
        flag, equals, value = argument.partition("=")
        if flag not in ("--config", "-config"):
            continue
        if equals:
            resolved[index] = f"{flag}={_config_path(value)}"
        elif index + 1 < len(argv):
            resolved[index + 1] = _config_path(argv[index + 1])
    return resolved


def _config_path(value: str) -> str:
    path, colon, argument = value.partition(":")  # config_flags hands what follows a colon to get_config
    return find_config_file(path) + colon + argument
