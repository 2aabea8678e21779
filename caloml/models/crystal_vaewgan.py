"""VAE + WGAN: the decoder of a trained VAE, fed with prior samples, refined adversarially against a Wasserstein critic.

The scheme of the VAE + WGAN poster (J. Jabbar, DPG spring meeting 2021): first learn a latent representation of
the showers with a VAE and KL annealing (:class:`~caloml.models.crystal_vae.CrystalVAE`), then train a GAN for
high-fidelity synthesis, "two successive problems". :class:`CrystalVAEWGAN` starts from the VAE's encoder, decoder
and cell widths (``python -m caloml.train vaewgan --init-from RUN_OF_VAE``) and trains the decoder as the generator
of a WGAN-GP (:class:`~caloml.models.crystal_wgan.CrystalWGAN`, fresh critic and constrainer) on z ~ N(0, 1). The
generator loss keeps the VAE's negative ELBO on real showers with the weight ``reconstruction_weight``, so that the
encoder and the decoder stay consistent and the latent space keeps its information::

    generator = -mean D(G(z, c)) + constraint_weight * mean (K(G(z, c)) - c)^2 + reconstruction_weight * ELBO loss

The encoder and the cell widths train with the generator. A generated shower is the decoder's output for the
prior sample (no decoder noise: the adversarial stage makes it sharp). See ``docs/vaewgan.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from caloml.models.crystal_vae import CrystalVAE, VariationalShowerModel
from caloml.models.crystal_wgan import CrystalWGAN

__all__ = ["CrystalVAEWGAN"]

#: Constructor arguments a CrystalVAEWGAN shares with the CrystalVAE it starts from.
SHARED_VAE_ARGUMENTS = (
    "latent_dim",
    "hidden_units",
    "hidden_layers",
    "energy_range_gev",
    "n_side",
    "threshold_gev",
    "particle",
    "geometry",
    "beta_max",
    "kl_anneal_steps",
)


@keras.saving.register_keras_serializable(package="caloml")
class CrystalVAEWGAN(CrystalWGAN, VariationalShowerModel):
    """The VAE's decoder as the generator of a WGAN-GP, with the VAE loss kept as a regularizer.

    Args:
        reconstruction_weight: weight of the VAE's negative ELBO in the generator loss.
        **kwargs: the arguments of :class:`~caloml.models.crystal_wgan.CrystalWGAN` and of
            :class:`~caloml.models.crystal_vae.VariationalShowerModel`.
    """

    def __init__(self, *, reconstruction_weight: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if float(reconstruction_weight) < 0:
            raise ValueError(f"reconstruction_weight must be non-negative, got {reconstruction_weight}")
        self.reconstruction_weight = float(reconstruction_weight)
        self.track_metrics(self.metric_names())

    def metric_names(self) -> tuple[str, ...]:
        """The WGAN's metrics and the VAE loss's parts."""
        return (*super().metric_names(), "reconstruction", "kl")

    def generator_variables(self) -> list[Any]:
        """The decoder, the encoder and the cell widths train in the generator update."""
        return [*self.decoder.trainable_variables, *self.encoder.trainable_variables, self.log_sigma]

    def vae_arguments(self) -> dict[str, Any]:
        """The constructor arguments of the matching :class:`CrystalVAE`."""
        config = self.get_config()
        return {key: config[key] for key in SHARED_VAE_ARGUMENTS}

    def initialize_from_vae(self, vae: CrystalVAE) -> None:
        """Copy the encoder, decoder, cell widths and annealing step of a trained VAE (ValueError if it differs)."""
        mine, theirs = self.vae_arguments(), {key: vae.get_config()[key] for key in SHARED_VAE_ARGUMENTS}
        different = [key for key in SHARED_VAE_ARGUMENTS if mine[key] != theirs[key]]
        if different:
            key = different[0]
            raise ValueError(f"the VAE has {key} = {theirs[key]!r}, this model {mine[key]!r}")
        self.decoder.set_weights(vae.decoder.get_weights())
        self.encoder.set_weights(vae.encoder.get_weights())
        self.log_sigma.assign(vae.log_sigma)
        self.vae_steps.assign(vae.vae_steps)

    def set_weights(self, weights: list[Any]) -> None:
        """Set all weights, or, given the weights of a matching :class:`CrystalVAE` (what ``--init-from`` a VAE run
        passes), initialize the VAE part and leave the critic and the constrainer as they are."""
        if len(weights) == len(self.weights):
            super().set_weights(weights)
            return
        vae = CrystalVAE(**self.vae_arguments(), seed=self.seed)
        vae.set_weights(weights)
        self.initialize_from_vae(vae)

    def generator_terms(
        self, real: tf.Tensor, condition: tf.Tensor, fed: Mapping[str, tf.Tensor] | None = None
    ) -> dict[str, tf.Tensor]:
        """The adversarial loss plus ``reconstruction_weight`` times the VAE's negative ELBO on the real showers
        (``fed``: the rows' ``noise_generator`` and ``noise_latent``, if the batch gave them)."""
        adversarial, constraint = self.adversarial_loss(condition, fed)
        parts = self.vae_loss(real, condition, fed)
        return {
            "generator_loss": adversarial + self.reconstruction_weight * parts["loss"],
            "constraint": constraint,
            "reconstruction": parts["reconstruction"],
            "kl": parts["kl"],
        }

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "reconstruction_weight": self.reconstruction_weight}
