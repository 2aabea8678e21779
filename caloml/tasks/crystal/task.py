"""The three crystal-array training tasks: ``wgan``, ``vae`` and ``vaewgan`` (``python -m caloml.train NAME``).

Each binds its model (:mod:`caloml.models.crystal_wgan`, :mod:`~caloml.models.crystal_vae`,
:mod:`~caloml.models.crystal_vaewgan`) to the shared trainer with the data of :mod:`caloml.tasks.crystal.data`.
``vaewgan`` starts from a trained ``vae`` run: ``--init-from RUN_OF_VAE`` is required, and the VAE must match
(latent size, widths, trained energy range).

Model selection: after every epoch, showers are generated (fixed seed) for the energies of the validation showers;
the metric is the mean over the validation energy points of the mean separation power of the crystal observables
(:func:`caloml.observables.crystal.separation_powers`); the best of the last ``trainer.selection_window`` epochs is
kept. Export after training is the exporter's (:func:`caloml.export.crystal.export_trained`), not the task's.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.models.base import attribute_config
from caloml.models.crystal_vae import CrystalVAE
from caloml.models.crystal_vaewgan import CrystalVAEWGAN
from caloml.models.crystal_wgan import CrystalWGAN
from caloml.observables.crystal import crystal_observables, separation_powers
from caloml.tasks.crystal.config import CrystalConfig, presets
from caloml.tasks.crystal.data import CrystalInputs, crystal_dataset, prepare_crystal_data
from caloml.training.task import SelectionMetric

__all__ = ["VAEWGAN_TASK", "VAE_TASK", "WGAN_TASK", "CrystalTask", "selection_separation"]


def selection_separation(model: keras.Model, showers: np.ndarray, energy: np.ndarray, seed: int) -> float:
    """Mean over the energy points of ``energy`` of the mean separation power of the crystal observables between
    showers generated for those energies (noise from ``seed``) and ``showers`` (N, n, n) GeV."""
    generated = model.generate(energy, seed=seed)
    values = []
    for point in np.unique(energy):
        inside = energy == point
        if inside.sum() < 20:
            continue
        powers = separation_powers(
            crystal_observables(generated[inside], energy[inside]), crystal_observables(showers[inside], energy[inside])
        )
        values.append(float(np.mean(list(powers.values()))))
    return float(np.mean(values)) if values else math.nan


_SHARED_KEYS = "latent_dim hidden_units hidden_layers"
_WGAN_KEYS = "critic_steps gradient_penalty_weight constraint_weight critic_features"
_VAE_KEYS = "beta_max kl_anneal_steps"
#: The keys of the model section each task's model takes (the others are another model's).
MODEL_KEYS = {
    "wgan": (_SHARED_KEYS, _WGAN_KEYS),
    "vae": (_SHARED_KEYS, _VAE_KEYS),
    "vaewgan": (_SHARED_KEYS, _WGAN_KEYS, _VAE_KEYS, "reconstruction_weight"),
}

#: The configuration key each command-line option of the tasks sets (by argparse destination).
OPTION_KEYS = {
    "data": "data.path",
    "particle": "data.particle",
    "events": "data.train_events",
    "latent_dim": "model.latent_dim",
}


class CrystalTask:
    """A crystal-array generator conditioned on the primary energy (``kind``: ``wgan``, ``vae`` or ``vaewgan``)."""

    config_class = CrystalConfig

    def __init__(self, kind: str, description: str) -> None:
        if kind not in ("wgan", "vae", "vaewgan"):
            raise ValueError(f"unknown crystal model kind {kind!r}")
        self.name = kind
        self.presets = presets(kind)
        self.__doc__ = description

    # -- command line
    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:  # type: ignore[override]
        """The task's options; each sets the configuration key of :data:`OPTION_KEYS`."""
        parser.add_argument("--data", help="a crystal-5x5 HDF5 file (default: simulate and cache the default set)")
        parser.add_argument("--particle", choices=["electron", "photon"])
        parser.add_argument("--events", type=int, help="showers of the default data")
        parser.add_argument("--latent-dim", type=int, help="latent dimension")

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {key: getattr(args, option) for option, key in OPTION_KEYS.items()}

    def default_run_dir(self, config: CrystalConfig) -> Path:
        return Path("runs") / f"{self.name}-crystal-5x5-{config.data.particle}"

    # -- data
    def prepare_data(self, config: CrystalConfig, *, chief: bool) -> CrystalInputs:
        if self.name == "vaewgan" and not config.trainer.init_from:
            raise CalomlError(
                "vaewgan starts from a trained VAE: pass --init-from RUN_OF_VAE (python -m caloml.train vae)"
            )
        if self.name != "vae" and config.trainer.global_batch_size % config.model.critic_steps:
            raise CalomlError(
                f"the batch size {config.trainer.global_batch_size} must be a multiple of model.critic_steps "
                f"({config.model.critic_steps}): each critic step takes one slice of it"
            )
        return prepare_crystal_data(config, chief=chief)

    def make_dataset(
        self, config: CrystalConfig, data: CrystalInputs, input_context: tf.distribute.InputContext
    ) -> tf.data.Dataset:
        return crystal_dataset(config, data, input_context)

    def input_records(self, config: CrystalConfig, data: CrystalInputs) -> list[Path]:
        """None: ``fit`` reads the showers from memory (the crystal file is read whole, and checked, beforehand)."""
        return []

    def steps_per_epoch(self, config: CrystalConfig, data: CrystalInputs) -> int:
        return max(1, len(data.train_energy) // config.trainer.global_batch_size)

    # -- model
    def model_arguments(self, config: CrystalConfig, data: CrystalInputs) -> dict[str, Any]:
        """The constructor arguments of this task's model."""
        return {
            **attribute_config(config.model, *MODEL_KEYS[self.name]),
            "energy_range_gev": data.energy_range_gev,
            "particle": config.data.particle,
            "seed": config.runtime.seed,
        }

    def build_model(self, config: CrystalConfig, data: CrystalInputs) -> keras.Model:
        arguments = self.model_arguments(config, data)
        t = config.trainer
        if self.name == "vae":
            vae = CrystalVAE(**arguments)
            vae.compile(keras.optimizers.Adam(t.learning_rate))
            return vae
        model = (CrystalWGAN if self.name == "wgan" else CrystalVAEWGAN)(**arguments)
        model.compile(
            critic_optimizer=keras.optimizers.Adam(t.critic_learning_rate, beta_1=0.5, beta_2=0.9),
            generator_optimizer=keras.optimizers.Adam(t.learning_rate, beta_1=0.5, beta_2=0.9),
            constrainer_optimizer=keras.optimizers.Adam(t.critic_learning_rate, beta_1=0.5, beta_2=0.9),
        )
        return model

    def optimizers(self, model: keras.Model) -> dict[str, keras.optimizers.Optimizer]:
        return dict(model.compiled_optimizers())

    def check_init_source(self, config: CrystalConfig, source: keras.Model) -> None:
        expected: dict[str, tuple[type, ...]] = {
            "wgan": (CrystalWGAN,),
            "vae": (CrystalVAE,),
            "vaewgan": (CrystalVAE, CrystalVAEWGAN),
        }
        classes = expected[self.name]
        if not isinstance(source, classes) or (self.name == "wgan" and isinstance(source, CrystalVAEWGAN)):
            names = " or ".join(c.__name__ for c in classes)
            raise CalomlError(f"--init-from: a {type(source).__name__}, this run needs a {names}")
        m = config.model
        for key, value in (("latent_dim", m.latent_dim), ("hidden_units", m.hidden_units)):
            if getattr(source, key) != value:
                raise CalomlError(f"--init-from: that model has {key} {getattr(source, key)}, this run {value}")
        particle = getattr(source, "particle", None)
        if particle != config.data.particle:
            raise CalomlError(f"--init-from: a model of {particle}s, this run trains on {config.data.particle}s")

    # -- selection
    def selection_metric(self, config: CrystalConfig, data: CrystalInputs) -> SelectionMetric:
        n = min(config.data.selection_events, len(data.validation_energy))
        showers, energy = data.validation_showers[:n], data.validation_energy[:n]
        seed = config.runtime.seed + 104729

        def compute(model: keras.Model) -> float:
            return selection_separation(model, showers, energy, seed)

        return SelectionMetric(
            "mean_separation_power",
            compute,
            "mean over the validation energy points of the mean separation power of the crystal observables",
        )


WGAN_TASK = CrystalTask("wgan", "Conditional WGAN-GP of crystal-5x5 showers (arXiv:1807.01954).")
VAE_TASK = CrystalTask("vae", "Conditional VAE with KL annealing of crystal-5x5 showers.")
VAEWGAN_TASK = CrystalTask(
    "vaewgan", "VAE + WGAN of crystal-5x5 showers: a trained VAE's decoder refined against a critic (--init-from)."
)
