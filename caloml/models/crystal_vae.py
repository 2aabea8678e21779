"""A conditional variational autoencoder of crystal-array showers with KL annealing (the first stage of VAE + WGAN).

The encoder maps a shower u and its energy condition c to the mean and log-variance of a Gaussian q(z | u, c); the
decoder maps z and c back to the mean of a Gaussian p(u | z, c) whose per-cell width sigma is learned. The loss per
shower is the negative ELBO with an annealed weight beta on the KL term::

    L = sum_cells [ (u - u_hat)^2 / (2 sigma^2) + ln sigma ] + beta(step) * KL(q(z | u, c) || N(0, 1))
    beta(step) = beta_max * min(1, step / kl_anneal_steps)

Ramping beta from 0 lets the decoder learn to use z before the KL term pulls q towards the prior, which avoids
posterior collapse (Bowman et al., "Generating sentences from a continuous space", arXiv:1511.06349). A generated
shower is the decoder's mean for z ~ N(0, 1) plus sigma times standard-normal noise, so ``noise_size`` is
latent_dim + n * n. :meth:`CrystalVAE.encode` gives the latent means and log-variances for the latent-space
analysis (``python -m caloml.evaluate latent``). See ``docs/vaewgan.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.models.base import attribute_config
from caloml.models.crystal_showers import CrystalShowerModel, check_finite, mlp, replica_share, showers_to_features

__all__ = ["CrystalVAE", "VariationalShowerModel", "vae_loss_terms"]


def vae_loss_terms(
    features: tf.Tensor, mean: tf.Tensor, log_var: tf.Tensor, decoded: tf.Tensor, log_sigma: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-shower (reconstruction, KL) terms (B,) of the negative ELBO (see the module docstring)."""
    residual = (features - decoded) * tf.exp(-log_sigma)
    reconstruction = tf.reduce_sum(0.5 * tf.square(residual) + log_sigma, axis=1)
    kl = 0.5 * tf.reduce_sum(tf.square(mean) + tf.exp(log_var) - 1.0 - log_var, axis=1)
    return reconstruction, kl


class VariationalShowerModel(CrystalShowerModel):
    """The variational part shared by :class:`CrystalVAE` and the VAE + WGAN: the encoder, the learned cell widths,
    the annealed KL weight and the negative ELBO. Generation uses the decoder's mean (the VAE adds the noise).

    Args:
        beta_max: the final weight of the KL term.
        kl_anneal_steps: training steps over which beta ramps linearly from 0 to ``beta_max``.
        **kwargs: the arguments of :class:`~caloml.models.crystal_showers.CrystalShowerModel`.
    """

    def __init__(self, *, beta_max: float = 1.0, kl_anneal_steps: int = 2000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not float(beta_max) > 0 or int(kl_anneal_steps) < 0:
            raise ValueError(f"need beta_max > 0 and kl_anneal_steps >= 0, got {beta_max}, {kl_anneal_steps}")
        self.beta_max = float(beta_max)
        self.kl_anneal_steps = int(kl_anneal_steps)
        self.encoder = mlp(
            [keras.Input((self.n_cells,), name="shower"), keras.Input((1,), name="condition")],
            self.hidden_units,
            self.hidden_layers,
            2 * self.latent_dim,
            "encoder",
            self.seed + 300,
        )
        self.log_sigma = self.add_weight(
            shape=(self.n_cells,),
            initializer=keras.initializers.Constant(math.log(0.1)),
            trainable=True,
            name="log_sigma",
        )
        self.vae_steps = self.add_weight(
            shape=(), dtype="int64", initializer="zeros", trainable=False, name="vae_steps"
        )

    def encode_features(self, features: tf.Tensor, condition: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(mean, log-variance), each (B, latent_dim), of q(z | u, c)."""
        moments = self.encoder([features, condition])
        return moments[:, : self.latent_dim], tf.clip_by_value(moments[:, self.latent_dim :], -12.0, 8.0)

    def encode(self, showers_gev: Any, energy_gev: Any, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Latent means and log-variances (N, latent_dim) of showers (N, n, n) GeV with primaries (N,) GeV."""
        means, log_vars = [], []
        energy_all = self.check_energies(energy_gev)
        for start in range(0, energy_all.size, batch_size):
            energy = tf.constant(energy_all[start : start + batch_size])
            features = showers_to_features(tf.constant(np.asarray(showers_gev[start : start + batch_size])), energy)
            mean, log_var = self.encode_features(features, self.condition(energy))
            means.append(mean.numpy())
            log_vars.append(log_var.numpy())
        return np.concatenate(means), np.concatenate(log_vars)

    def beta(self) -> tf.Tensor:
        """The current KL weight."""
        if self.kl_anneal_steps == 0:
            return tf.constant(self.beta_max)
        ramp = tf.cast(self.vae_steps, tf.float32) / float(self.kl_anneal_steps)
        return self.beta_max * tf.minimum(1.0, ramp)

    def vae_loss(
        self, features: tf.Tensor, condition: tf.Tensor, fed: Mapping[str, tf.Tensor] | None = None
    ) -> dict[str, tf.Tensor]:
        """The annealed negative ELBO of a batch and its parts (scalars); call it inside the gradient tape.
        ``fed["noise_latent"]`` (B, latent_dim), when given, is the eps of z = mu + sigma eps (else drawn)."""
        mean, log_var = self.encode_features(features, condition)
        eps = self.normal_or_fed(fed, "noise_latent", tf.shape(mean)[0], self.latent_dim)
        z = mean + tf.exp(0.5 * log_var) * eps
        decoded = self.decode(z, condition, training=True)
        reconstruction, kl = vae_loss_terms(features, mean, log_var, decoded, self.log_sigma)
        beta = self.beta()
        loss = tf.reduce_mean(reconstruction + beta * kl)
        return {"loss": loss, "reconstruction": tf.reduce_mean(reconstruction), "kl": tf.reduce_mean(kl), "beta": beta}

    def vae_variables(self) -> list[Any]:
        """The trainable variables of the VAE: decoder, encoder and the cell widths."""
        return [*self.decoder.trainable_variables, *self.encoder.trainable_variables, self.log_sigma]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **attribute_config(self, "beta_max kl_anneal_steps")}


@keras.saving.register_keras_serializable(package="caloml")
class CrystalVAE(VariationalShowerModel):
    """Conditional VAE of crystal showers with KL annealing; its samples add the decoder's Gaussian noise.

    Args: those of :class:`VariationalShowerModel`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.track_metrics(("loss", "reconstruction", "kl", "beta"))
        self.built = True

    @property
    def noise_size(self) -> int:
        """latent_dim numbers for z, then one per cell for the decoder's Gaussian."""
        return self.latent_dim + self.n_cells

    def decode_noise(self, noise: tf.Tensor, condition: tf.Tensor, training: bool = False) -> tf.Tensor:
        mean = self.decode(noise[:, : self.latent_dim], condition, training=training)
        return mean + tf.exp(self.log_sigma) * noise[:, self.latent_dim :]

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One optimizer step on the annealed negative ELBO; beta advances by one step. The batch may hold
        ``noise_latent`` (B, latent_dim), the fixed eps of each shower (see ``crystal_showers.NOISE_KEYS``)."""
        if not self.compiled:
            raise RuntimeError("compile() the model before training")
        features, condition = self.batch_features(data)
        with tf.GradientTape() as tape:
            parts = self.vae_loss(features, condition, self.fed_noise(data))
            share = replica_share(check_finite(parts["loss"], "VAE loss"))
        variables = self.vae_variables()
        gradients = tape.gradient(share, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self.vae_steps.assign_add(tf.ones_like(self.vae_steps.value))
        self.update_metrics(parts)
        return self.metric_results()
