"""Generating from an exported SavedModel (``saved_models/<name>/<version>/``) instead of a run directory.

Someone who received only an export can make files with ``python -m caloml.generate MODEL --model
saved_models/<name>/<v>``: the loaders here wrap the SavedModel's signatures in the few methods the generation
modules call on a Keras model, with the export's ``assets.extra/export.json`` for the configuration and trained
ranges. The same seed and request give the same file as from the run directory (the noise is drawn by caloml, as
for a Keras model, and passed to the export's noise signature; the Pyramid's batches use its ``sample`` signature
with the same stateless seeds), up to float rounding. CaloPointFlow's export draws each shower from its own int64
seed (``showers_from_seeds``), derived from the request's seed and the shower's index: the same seed gives the same
file, with the run directory's layout, units and energies, but other draws than the run directory's sampler.
See ``docs/serving.md``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from caloml.errors import CalomlError
from caloml.export.serving import export_info_path

__all__ = [
    "SAVED_MODEL_FILE",
    "ExportedCrystal",
    "ExportedGAN3D",
    "ExportedPointFlow",
    "ExportedPyramid",
    "is_export",
    "load_exported",
    "per_shower_seeds",
]

#: The file that marks a SavedModel directory.
SAVED_MODEL_FILE = "saved_model.pb"


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an exported version directory (a SavedModel)."""
    return (Path(path) / SAVED_MODEL_FILE).is_file()


class _Exported:
    """The loaded SavedModel and its ``export.json``."""

    def __init__(self, path: Path, info: dict[str, Any], loaded: Any) -> None:
        self.path = path
        self.info = info
        self.signatures = loaded.signatures
        self._loaded = loaded  # keeps the signatures' variables alive
        self.particle = str(info.get("particle", "electron"))
        self.seed = info.get("seed")

    def get_config(self) -> dict[str, Any]:
        """The exported model's Keras configuration (as recorded at export)."""
        return dict(self.info.get("model_config") or {})


class ExportedGAN3D(_Exported):
    """A 3DGAN export with :class:`~caloml.models.gan3d.GAN3D`'s generation interface."""

    def __init__(self, path: Path, info: dict[str, Any], loaded: Any) -> None:
        super().__init__(path, info, loaded)
        self.latent_size = int(info["latent_size"])
        self.condition_angle = info.get("condition_angle") or "theta"
        self.energy_range_gev = tuple(float(v) for v in info["energy_range_gev"])
        self.theta_range_rad = tuple(float(v) for v in info["theta_range_rad"])

    @property
    def noise_size(self) -> int:
        """Noise values per shower."""
        return self.latent_size - 2

    def check_conditions(self, energy_gev: Any, theta_rad: Any) -> None:
        """CalomlError unless the conditions are finite and inside the trained ranges (``GAN3D.check_conditions``)."""
        from caloml.models.gan3d import GAN3D

        GAN3D.check_conditions(self, energy_gev, theta_rad)  # type: ignore[arg-type]  # reads only the ranges

    def generate(self, energy_gev: Any, theta_rad: Any, noise: Any = None, seed: int | None = None) -> Any:
        """Showers (B, 51, 51, 25) GeV from the export's ``showers_from_noise`` signature (noise drawn from ``seed``
        as ``GAN3D.generate`` does when not given)."""
        import tensorflow as tf

        energy = tf.reshape(tf.cast(energy_gev, tf.float32), (-1,))
        theta = tf.reshape(tf.cast(theta_rad, tf.float32), (-1,))
        if noise is None:
            shape = tf.stack([tf.shape(energy)[0], self.noise_size])
            noise = tf.random.stateless_normal(shape, seed=tf.constant([int(seed or 0), 0], tf.int64))
        signature = self.signatures["showers_from_noise"]
        return signature(energy_gev=energy, theta_rad=theta, noise=tf.cast(noise, tf.float32))["showers_gev"]


class ExportedCrystal(_Exported):
    """A crystal-generator export with ``CrystalShowerModel``'s generation interface."""

    def __init__(self, path: Path, info: dict[str, Any], loaded: Any) -> None:
        super().__init__(path, info, loaded)
        self.geometry = str(info["geometry"])
        self.energy_range_gev = tuple(float(v) for v in info["energy_range_gev"])
        self.noise_size = int(info["noise_size"])
        self.kind = str(info["model"])

    def accepted_range(self) -> tuple[float, float]:
        """The trained range widened as the model accepts it, GeV."""
        from caloml.models.crystal_showers import CrystalShowerModel

        return CrystalShowerModel.accepted_range(self)  # type: ignore[arg-type]  # reads only the range

    def check_energies(self, energy_gev: Any) -> np.ndarray:
        """The energies as float32 (B,), or CalomlError outside the trained range (as the model checks)."""
        from caloml.models.crystal_showers import CrystalShowerModel

        return CrystalShowerModel.check_energies(self, energy_gev)  # type: ignore[arg-type]

    def generate(self, energy_gev: Any, seed: int = 1, batch_size: int = 10000) -> np.ndarray:
        """Showers (B, 5, 5) GeV, the noise of batch ``index`` drawn from ``(seed, index)`` as the model does."""
        import tensorflow as tf

        energy = self.check_energies(energy_gev)
        signature = self.signatures["showers_from_noise"]
        out = []
        for index, start in enumerate(range(0, energy.size, batch_size)):
            part = tf.constant(energy[start : start + batch_size])
            noise = tf.random.stateless_normal(
                (int(part.shape[0]), self.noise_size), seed=tf.constant([seed, index], tf.int64)
            )
            out.append(signature(energy_gev=part, noise=noise)["showers_gev"].numpy())
        return np.concatenate(out) if out else np.zeros((0, 5, 5), np.float32)


class _Statistics:
    def __init__(self, incident_energy_range_gev: tuple[float, ...]) -> None:
        self.incident_energy_range_gev = incident_energy_range_gev


class ExportedPyramid(_Exported):
    """A Calorimeter Pyramid export with the model's ``sample`` and energy check."""

    def __init__(self, path: Path, info: dict[str, Any], loaded: Any) -> None:
        super().__init__(path, info, loaded)
        self.statistics = _Statistics(tuple(float(v) for v in info["incident_energy_range_gev"]))
        self.grid_shape = tuple(int(n) for n in info["grid_shape"])

    def check_incident_energy(self, incident_energy_gev: Any, what: str = "incident energy") -> None:
        """CalomlError unless every incident energy (GeV) is finite and inside the trained range."""
        from caloml.models.pyramid import check_pyramid_energies

        check_pyramid_energies(incident_energy_gev, self.statistics.incident_energy_range_gev, what)

    def sample(self, incident_energy_gev: Any, seed: Any) -> dict[str, Any]:
        """``showers`` (B, 45, 16, 9) GeV, ``n_hits`` and ``requested_hits`` (B,) for a stateless seed (2,): the
        export's ``sample`` signature (showers in MeV there)."""
        import tensorflow as tf

        seed = tf.cast(seed, tf.int64)
        fits = tf.debugging.assert_less(
            tf.abs(seed), tf.constant(2**31, tf.int64), message="the export's sample signature takes int32 seeds"
        )
        with tf.control_dependencies([fits]):
            seed32 = tf.cast(seed, tf.int32)
        energy = tf.reshape(tf.cast(incident_energy_gev, tf.float32), [-1])
        out = self.signatures["sample"](incident_energy=energy, seed=seed32)
        return {
            "showers": out["showers"] / 1000.0,  # MeV -> GeV
            "n_hits": out["n_hits"],
            "requested_hits": out["n_hits"],  # top-k placement: every requested hit is placed
        }


def per_shower_seeds(seed: int, first_index: int, count: int) -> np.ndarray:
    """The int64 seeds (count,) of showers ``first_index ...`` of a request with ``seed``: shower ``i``'s seed
    depends on ``(seed, i)`` only, so a file does not depend on the batch size."""
    indices = np.arange(first_index, first_index + count, dtype=np.uint64)
    key = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 11]).generate_state(2, dtype=np.uint64)
    mixed = (indices * np.uint64(0x9E3779B97F4A7C15) + key[0]) ^ key[1]  # a bijection of the index (wraps mod 2^64)
    mixed ^= mixed >> np.uint64(31)
    return mixed.view(np.int64)


class ExportedPointFlow(_Exported):
    """A CaloPointFlow export with what :mod:`caloml.generate.pointflow` reads of the model: ``grid_shape``,
    ``normalization``, ``check_incident_energy``, and :meth:`sample_showers` (the ``showers_from_seeds`` signature)."""

    def __init__(self, path: Path, info: dict[str, Any], loaded: Any) -> None:
        from caloml.models.pointflow_normalization import PointCloudNormalization

        super().__init__(path, info, loaded)
        self.grid_shape = tuple(int(n) for n in info["grid_shape"])
        self.normalization = PointCloudNormalization.from_dict(info["normalization"])
        self.n_points = int(info["n_points"])

    def check_incident_energy(self, incident_energy_gev: Any, what: str = "incident energy") -> None:
        """CalomlError unless every incident energy (GeV) is finite and inside the trained range (the model's check)."""
        from caloml.models.pointflow_normalization import check_incident_energy_range

        check_incident_energy_range(incident_energy_gev, self.normalization.incident_energy_range_gev, what)

    def sample_showers(self, energy_gev: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(showers (B, *grid) float32 GeV, non-empty cells (B,) int32) for energies (B,) GeV and int64 seeds (B,)."""
        import tensorflow as tf

        out = self.signatures["showers_from_seeds"](
            energy_gev=tf.constant(np.asarray(energy_gev, np.float32).reshape(-1)),
            seed=tf.constant(np.asarray(seeds, np.int64).reshape(-1)),
        )
        return out["showers_gev"].numpy(), out["n_hits"].numpy()


#: ``model`` of ``export.json`` -> the wrapper of its export.
_ADAPTERS: dict[str, type[_Exported]] = {
    "gan3d": ExportedGAN3D,
    "wgan": ExportedCrystal,
    "vae": ExportedCrystal,
    "vaewgan": ExportedCrystal,
    "pyramid": ExportedPyramid,
    "pointflow": ExportedPointFlow,
}


def load_exported(path: str | Path, model_class: type) -> _Exported:
    """The export in ``path`` wrapped for generation; CalomlError when it is not an export of ``model_class`` (or of
    a subclass), or has no generation interface here."""
    path = Path(path)
    info_file = export_info_path(path)
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError) as error:
        raise CalomlError(f"{path}: a SavedModel without a readable {info_file.name} ({error})") from None
    kind = str(info.get("model"))
    module, _, name = str(info.get("model_class", "")).rpartition(".")
    recorded = getattr(importlib.import_module(module), name, None) if module.startswith("caloml.models.") else None
    if not (isinstance(recorded, type) and issubclass(recorded, model_class)):
        raise CalomlError(f"{path}: an export of a {name or kind} model, expected a {model_class.__name__}")
    if kind not in _ADAPTERS:
        raise CalomlError(f"{path}: generating from an export of {kind} is not supported; use its run directory")
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise CalomlError(f"{path}: not a readable SavedModel ({str(error).splitlines()[0][:200]})") from None
    return _ADAPTERS[kind](path, info, loaded)
