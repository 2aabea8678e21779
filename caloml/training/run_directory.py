"""The run directory: one per training run, resumable, never silently replaced.

Layout::

    RUN/config.yaml         resolved configuration, seed included (written before the first step)
    RUN/checkpoints/        tf.train.Checkpoint of the model, its optimizers and the epoch, after every epoch
    RUN/logs/               TensorBoard event files
    RUN/selection.json      the model-selection metric per epoch and the chosen epoch
    RUN/model.keras         the selected model (complete Keras archive), written when training ends
    RUN/history.json        the per-epoch training metrics
    RUN/timing.json         per epoch: wall seconds of training and of the selection metric, showers seen

Starting a run in a directory that holds one: the same configuration (up to the keys in
:data:`RESUMABLE_CHANGES`, e.g. more epochs) resumes from the last checkpoint; a different one is refused unless
``overwrite`` is given, in which case the old directory is moved aside to ``RUN.replaced-N`` (nothing is deleted).

See ``docs/training.md``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caloml.atomic_files import remove_stale_temporaries
from caloml.errors import CalomlError, OutputExistsError
from caloml.training.config import read_config_dict

#: Configuration keys a resumed run may change: how long it trains and where and how it executes.
RESUMABLE_CHANGES = (
    "trainer.epochs",
    "trainer.init_from",  # only read by a fresh run
    "trainer.export",
    "runtime.run_dir",  # the same directory, perhaps spelled differently
    "runtime.strategy",
    "runtime.cpu_replicas",
    "runtime.progress",
    "trainer.tensorboard_update_freq",  # logging only (and absent from the runs made before it existed)
    "runtime.deterministic",  # how the kernels run, not what is trained
    "trainer.on_nonfinite",  # resuming after a NaN stop with skip-batch
)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two configurations, ignoring :data:`RESUMABLE_CHANGES`."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted(set(a) | set(b))
    return [k for k in keys if k not in RESUMABLE_CHANGES and a.get(k) != b.get(k)]


@dataclass(frozen=True)
class RunDirectory:
    """Paths of a run directory (see the module docstring)."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def selection(self) -> Path:
        return self.path / "selection.json"

    @property
    def model(self) -> Path:
        return self.path / "model.keras"

    @property
    def timing(self) -> Path:
        """Per-epoch wall-clock seconds and examples seen (kept apart from ``history.json``, which is exact)."""
        return self.path / "timing.json"

    @property
    def history(self) -> Path:
        return self.path / "history.json"

    def has_checkpoint(self) -> bool:
        """Whether at least one epoch checkpoint exists."""
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("ckpt-*.index"))

    def prepare(self, config: dict[str, Any], *, overwrite: bool = False) -> bool:
        """Check the directory against ``config`` before training; True when an earlier run is resumed.

        A directory without ``config.yaml`` must be empty (or absent); one without a checkpoint starts afresh.
        Otherwise a configuration identical up to :data:`RESUMABLE_CHANGES` resumes; a different one is an
        OutputExistsError, or with ``overwrite`` the old directory is renamed to ``RUN.replaced-N`` and a new run
        starts.
        """
        if not self.path.exists():
            return False
        if not self.path.is_dir():
            raise OutputExistsError(f"{self.path}: exists and is not a directory")
        if not self.config.exists():
            if any(self.path.iterdir()):
                if not overwrite:
                    raise OutputExistsError(
                        f"{self.path}: not empty and not a caloml run; choose another --run-dir or pass --overwrite"
                    )
                self._move_aside()
            return False
        self.remove_leftovers()
        if not self.has_checkpoint():
            return False  # configured but never finished an epoch: nothing to resume or lose
        try:
            old = read_config_dict(self.config)
        except CalomlError:
            old = {}
        differences = config_differences(old, config)
        if not differences:
            return True
        if not overwrite:
            shown = ", ".join(differences[:4]) + (" ..." if len(differences) > 4 else "")
            raise OutputExistsError(
                f"{self.path}: holds a run with a different configuration ({shown}); "
                "choose another --run-dir, or pass --overwrite to move it aside and start again"
            )
        self._move_aside()
        return False

    def remove_leftovers(self) -> list[Path]:
        """Remove what a killed run left half-written; returns the paths removed.

        That is caloml's temporaries of dead processes (:func:`caloml.atomic_files.remove_stale_temporaries`) and
        TensorFlow's unfinished checkpoint shards (``checkpoints/ckpt-N_temp/``, renamed into place only when a
        save completes; the ``checkpoint`` state file never names them).
        """
        removed = remove_stale_temporaries(self.path)
        if self.checkpoints.is_dir():
            removed += remove_stale_temporaries(self.checkpoints)
            for unfinished in sorted(self.checkpoints.glob("ckpt-*_temp")):
                shutil.rmtree(unfinished, ignore_errors=True)
                removed.append(unfinished)
        return removed

    def _move_aside(self) -> Path:
        n = 1
        while (target := self.path.with_name(f"{self.path.name}.replaced-{n}")).exists():
            n += 1
        self.path.rename(target)
        print(f"moved the previous run to {target}")
        return target
