"""Training configurations: a dataclass tree ``{data, model, trainer, runtime}`` per task, resolved in one order.

Defaults (the dataclass fields) < a named preset < a YAML file < command-line flags < ``--set section.key=value``.
Every layer is checked against the dataclass: an unknown key or a value of the wrong type is a one-line
:class:`~caloml.errors.CalomlError` naming the key and where it came from. Strings from the command line are parsed
as YAML scalars, so ``--set trainer.resume=false`` is the boolean ``False`` (the original 3DGAN code parsed
``"False"`` as true).

See ``docs/training.md``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from caloml.atomic_files import atomic_write_text
from caloml.errors import CalomlError

Config = TypeVar("Config")

#: Sections every task configuration has, in this order.
SECTIONS = ("data", "model", "trainer", "runtime")


@dataclasses.dataclass
class RuntimeConfig:
    """Where and how a run executes.

    Attributes:
        strategy: ``default`` (no distribution), ``one_device``, ``mirrored`` (all local GPUs, or the CPU) or
            ``multi_worker`` (``MultiWorkerMirroredStrategy``, cluster from ``TF_CONFIG``).
        cpu_replicas: split the CPU into this many logical devices for ``mirrored`` when no GPU is present
            (0: do not split). Lets a laptop exercise the multi-replica code path.
        run_dir: directory of the run (config, checkpoints, TensorBoard logs, selected model).
        seed: seed of every random draw of the run (data order, noise, initialization).
        progress: show a progress bar.
        mixed_precision: Keras dtype policy name, e.g. ``mixed_bfloat16`` (empty: float32).
        deterministic: TensorFlow's op determinism and ordered input pipelines: two runs with the same seed give
            bit-identical weights and history (slower; see :mod:`caloml.training.determinism`).
    """

    strategy: str = "default"
    cpu_replicas: int = 0
    run_dir: str = ""
    seed: int = 1
    progress: bool = True
    mixed_precision: str = ""
    deterministic: bool = False


@dataclasses.dataclass
class TrainerSection:
    """Trainer settings every Keras task shares (a task's ``trainer`` section extends this dataclass).

    Attributes:
        epochs: total number of epochs (a resumed run continues up to it).
        global_batch_size: events per step over all replicas (each replica gets an equal share).
        steps_per_epoch: steps per epoch (0: one pass over the training data).
        keep_checkpoints: epoch checkpoints kept (at least ``selection_window``, so that any selectable epoch can
            be restored).
        selection_window: the model is selected among the last this-many epochs by the task's metric.
        init_from: start from the weights of a run directory, ``.keras`` file or checkpoint (transfer training);
            the optimizer state and the epoch counter start fresh.
        export: after training, export the selected model to ``saved_models/`` (TF Serving layout).
        tensorboard_update_freq: steps between the per-step losses written to TensorBoard (0: none).
        on_nonfinite: what a NaN or infinite training loss does: ``stop`` the run (the last good checkpoint is
            kept) or undo its step (``skip-batch``); see :mod:`caloml.training.nonfinite`.
    """

    epochs: int = 1
    global_batch_size: int = 64
    steps_per_epoch: int = 0
    keep_checkpoints: int = 10
    selection_window: int = 10
    init_from: str = ""
    export: bool = False
    tensorboard_update_freq: int = 10
    on_nonfinite: str = "stop"


@dataclasses.dataclass
class TaskConfig:
    """The sections every Keras task's configuration shares; a task's configuration extends this dataclass.

    A task adds its own ``data`` and ``model`` sections and may narrow ``trainer`` to its extension of
    :class:`TrainerSection`. The sections are written in the order of :data:`SECTIONS` whatever the field order.

    Attributes:
        trainer: the shared trainer settings.
        runtime: where and how the run executes.
    """

    trainer: TrainerSection = dataclasses.field(default_factory=TrainerSection)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The configuration as plain YAML-ready data (tuples become lists), its sections in the order of SECTIONS."""
    values = dataclasses.asdict(config)
    ordered = {name: values.pop(name) for name in SECTIONS if name in values}
    return _plain({**ordered, **values})


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def resolve_config(
    cls: type[Config],
    *,
    preset: Mapping[str, Any] | None = None,
    yaml_path: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    assignments: list[str] | None = None,
) -> Config:
    """Build ``cls`` from its defaults, then ``preset``, the YAML file, ``flags`` and ``assignments`` in order.

    ``preset`` and the YAML file are nested mappings ``{section: {key: value}}``; ``flags`` maps dotted keys
    (``"trainer.epochs"``) to values, where None means "not given"; ``assignments`` are ``"section.key=value"``
    strings with YAML values.
    """
    merged: dict[str, Any] = config_to_dict(cls())
    sections = _section_paths(cls)
    if preset:
        _merge(merged, preset, "preset", sections)
    if yaml_path is not None:
        _merge(merged, _read_yaml(Path(yaml_path)), str(yaml_path), sections)
    for dotted, value in (flags or {}).items():
        if value is not None:
            _merge(merged, _nest(dotted, value), "command line", sections)
    for assignment in assignments or []:
        if "=" not in assignment:
            raise CalomlError(f"--set {assignment!r}: expected section.key=value")
        dotted, text = assignment.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CalomlError(f"--set {assignment!r}: the value is not valid YAML ({exc.__class__.__name__})") from None
        _merge(merged, _nest(dotted.strip(), value), "--set", sections)
    return _build(cls, merged, "")


def _section_paths(cls: type, prefix: str = "") -> set[str]:
    """Dotted paths of the dataclass-valued fields of ``cls`` (its sections), e.g. ``{"data", "model"}``.

    Their keys are fixed by the dataclass; the keys of a dict-valued field (``dict[str, float]``) are free.
    """
    hints = typing.get_type_hints(cls)
    paths: set[str] = set()
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            path = f"{prefix}{field.name}"
            paths |= {path} | _section_paths(hint, f"{path}.")  # type: ignore[arg-type]
    return paths


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CalomlError(f"{path}: configuration file not found")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CalomlError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise CalomlError(f"{path}: expected a mapping of sections {SECTIONS}, got {type(loaded).__name__}")
    return loaded


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    parts = dotted.split(".")
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def _merge(base: dict[str, Any], update: Mapping[str, Any], source: str, sections: set[str], prefix: str = "") -> None:
    """Merge ``update`` into ``base`` in place.

    Inside a section (a dataclass) every key must exist. A dict-valued field takes new keys, merges a mapping key by
    key and is cleared by an empty mapping (``--set data.simulation_factor={}``).
    """
    section = prefix.rstrip(".")
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base:
            if section in sections or not prefix:
                known = ", ".join(sorted(base))
                raise CalomlError(f"{source}: unknown configuration key '{name}' (known here: {known})")
            base[key] = value
        elif isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                kind = "a section" if name in sections else "a mapping"
                raise CalomlError(f"{source}: '{name}' is {kind}; expected a mapping, got {value!r}")
            if name not in sections and not value:
                base[key] = {}
            else:
                _merge(base[key], value, source, sections, f"{name}.")
        else:
            base[key] = value


def _build(cls: type[Config], values: dict[str, Any], prefix: str) -> Config:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f"{prefix}{field.name}"
        hint = hints[field.name]
        value = values[field.name]
        if dataclasses.is_dataclass(hint):
            kwargs[field.name] = _build(hint, value, f"{name}.")  # type: ignore[arg-type]
        else:
            kwargs[field.name] = _coerce(value, hint, name)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` checked against the type ``hint`` (int, float, str, bool, tuples, lists, optionals)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, name)
            except CalomlError as exc:
                errors.append(str(exc))
        raise CalomlError(errors[0])
    if origin is tuple:
        if not isinstance(value, list | tuple) or (args[-1] is not Ellipsis and len(value) != len(args)):
            raise CalomlError(f"configuration '{name}': expected {len(args)} values, got {value!r}")
        item_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        return tuple(_coerce(v, t, f"{name}[{i}]") for i, (v, t) in enumerate(zip(value, item_types, strict=True)))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise CalomlError(f"configuration '{name}': expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise CalomlError(f"configuration '{name}': expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{name}.{k}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise CalomlError(f"configuration '{name}': expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise CalomlError(f"configuration '{name}': expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise CalomlError(f"configuration '{name}': expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise CalomlError(f"configuration '{name}': expected a string, got {value!r}")
    if hint is Any:
        return value
    raise TypeError(f"configuration '{name}': unsupported field type {hint!r}")


def write_config(config: Any, path: str | Path) -> Path:
    """Write the resolved configuration as YAML, atomically; returns the path."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    return atomic_write_text(Path(path), text)


def read_config_dict(path: str | Path) -> dict[str, Any]:
    """A configuration file written by :func:`write_config`, as nested mappings."""
    return _read_yaml(Path(path))
