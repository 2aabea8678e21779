"""A conditional Wasserstein GAN with gradient penalty for crystal-array showers (the baseline of arXiv:1807.01954).

"Precise simulation of electromagnetic calorimeter showers using a Wasserstein Generative Adversarial Network"
(Erdmann, Glombitza, Quast, arXiv:1807.01954): a critic estimates the Wasserstein distance between real and
generated showers with a gradient penalty (Gulrajani et al., arXiv:1704.00028) and is updated ``critic_steps``
times per generator step; the energy condition is enforced by a *constrainer*, a regressor of the energy condition
trained on real showers, whose squared error on generated showers joins the generator loss. The constrainer reads
the crystal energies themselves (log10(E_cell / GeV + 1e-4)), not the energy fractions u the critic reads: the
primary energy is in the absolute scale, which the fractions divide out.

One :meth:`CrystalWGAN.train_step` on a batch of B showers: ``critic_steps`` critic (and constrainer) updates on
consecutive slices of B / critic_steps showers, then one generator update on B / critic_steps fresh noise vectors
with the conditions of the first slice. Losses per slice::

    critic      = mean D(fake) - mean D(real) + gp_weight * mean (|grad D(x_hat)| - 1)^2 + 1e-3 mean D(real)^2
    constrainer = mean (K(a(real)) - c)^2,   a: the absolute crystal energies
    generator   = -mean D(fake) + constraint_weight * mean (K(a(fake)) - c)^2

With ``critic_features`` the critic also reads two shower summaries computed from u, the total E25 / E and a soft
count of the crystals with energy: the sum of 25 fractions and the number of hits are what the simulation fixes
most tightly (E25 / E to 1.4%), and a critic that only sees the 25 logarithms learns them slowly.

A non-finite loss stops training (:meth:`CrystalShowerModel.fit`). See ``docs/vaewgan.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from caloml.models.base import attribute_config
from caloml.models.crystal_showers import (
    FRACTION_OFFSET,
    CrystalShowerModel,
    check_finite,
    condition_energy,
    mlp,
    replica_share,
)

__all__ = ["CrystalWGAN"]

#: Weight of the drift term that keeps the critic's output near zero (Karras et al., arXiv:1710.10196).
DRIFT_WEIGHT = 1e-3


@keras.saving.register_keras_serializable(package="caloml")
class CrystalWGAN(CrystalShowerModel):
    """WGAN-GP generator of crystal showers conditioned on the primary energy.

    Args:
        critic_steps: critic updates per generator update.
        gradient_penalty_weight: weight of the gradient penalty (10 in arXiv:1704.00028).
        constraint_weight: weight of the constrainer's energy error in the generator loss.
        critic_features: the critic also reads E25 / E and the soft number of hits (see the module docstring).
        **kwargs: the arguments of :class:`~caloml.models.crystal_showers.CrystalShowerModel`.
    """

    def __init__(
        self,
        *,
        critic_steps: int = 5,
        gradient_penalty_weight: float = 10.0,
        constraint_weight: float = 1.0,
        critic_features: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(critic_steps) < 1:
            raise ValueError(f"critic_steps must be positive, got {critic_steps}")
        self.critic_steps = int(critic_steps)
        self.gradient_penalty_weight = float(gradient_penalty_weight)
        self.constraint_weight = float(constraint_weight)
        self.critic_features = bool(critic_features)
        # === Networks ===
        shower = keras.Input((self.n_cells + (2 if self.critic_features else 0),), name="shower")
        self.critic = mlp(
            [shower, keras.Input((1,), name="condition")],
            self.hidden_units,
            self.hidden_layers,
            1,
            "critic",
            self.seed + 100,
        )
        self.constrainer = mlp(
            [keras.Input((self.n_cells,), name="shower")], self.hidden_units, 2, 1, "constrainer", self.seed + 200
        )
        # === Metrics ===
        self.track_metrics(self.metric_names())
        self.critic_optimizer: Any = None
        self.generator_optimizer: Any = None
        self.constrainer_optimizer: Any = None
        self.built = True

    # ------------------------------------------------------------------ compile

    def generator_variables(self) -> list[Any]:
        """The variables the generator update trains."""
        return list(self.decoder.trainable_variables)

    def metric_names(self) -> tuple[str, ...]:
        """The names of the metrics ``train_step`` returns."""
        return ("critic_loss", "wasserstein", "gradient_penalty", "constrainer_loss", "generator_loss", "constraint")

    def compile(  # type: ignore[override]  # three optimizers instead of one
        self,
        critic_optimizer: keras.optimizers.Optimizer | None = None,
        generator_optimizer: keras.optimizers.Optimizer | None = None,
        constrainer_optimizer: keras.optimizers.Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        """Set the optimizers (Adam(1e-4, beta_1=0.5, beta_2=0.9) each by default, as arXiv:1704.00028) and
        build their variables; other keyword arguments go to :meth:`keras.Model.compile`."""
        self.refuse_compile_losses(kwargs, also=("optimizer",))
        keras.Model.compile(self, optimizer=None, **kwargs)  # not CalomlModel's: three optimizers, set here

        def adam() -> keras.optimizers.Optimizer:
            return keras.optimizers.Adam(1e-4, beta_1=0.5, beta_2=0.9)

        self.critic_optimizer = keras.optimizers.get(critic_optimizer or adam())
        self.generator_optimizer = keras.optimizers.get(generator_optimizer or adam())
        self.constrainer_optimizer = keras.optimizers.get(constrainer_optimizer or adam())
        self.critic_optimizer.build(self.critic.trainable_variables)
        self.generator_optimizer.build(self.generator_variables())
        self.constrainer_optimizer.build(self.constrainer.trainable_variables)

    def compiled_optimizers(self) -> dict[str, Any]:
        """The optimizers by ``compile`` keyword (checkpointed with the model)."""
        return {
            "critic_optimizer": self.critic_optimizer,
            "generator_optimizer": self.generator_optimizer,
            "constrainer_optimizer": self.constrainer_optimizer,
        }

    # ------------------------------------------------------------------ training

    def absolute_features(self, features: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
        """The constrainer's input log10(E_cell / GeV + 1e-4) (B, n * n) of showers u with conditions c (B, 1)."""
        fraction = tf.nn.relu(tf.pow(10.0, 2.0 * features - 2.0) - FRACTION_OFFSET)
        cells = fraction * condition_energy(condition, self.energy_range_gev)
        return tf.math.log(cells + 1e-4) / tf.math.log(10.0)

    def critic_input(self, features: tf.Tensor) -> tf.Tensor:
        """What the critic reads of showers u (B, n * n): u itself, with ``critic_features`` followed by
        (E25 / E - 0.97) / 0.02 and (soft number of hits - 12) / 5."""
        if not self.critic_features:
            return features
        fraction = tf.nn.relu(tf.pow(10.0, 2.0 * features - 2.0) - FRACTION_OFFSET)
        total = (tf.reduce_sum(fraction, axis=1, keepdims=True) - 0.97) / 0.02
        # empty crystals are u = -1, crystals above the threshold u >= -0.7 (5 GeV): count those above -0.85
        hits = tf.reduce_sum(tf.sigmoid((features + 0.85) / 0.03), axis=1, keepdims=True)
        return tf.concat([features, total, (hits - 12.0) / 5.0], axis=1)

    def critic_update(self, real: tf.Tensor, condition: tf.Tensor, fed: Mapping[str, tf.Tensor] | None = None) -> None:
        """One critic update and one constrainer update on real showers u (m, n * n) with conditions (m, 1);
        ``fed``: the m rows of the batch's ``noise_critic`` and ``noise_mix`` (:data:`NOISE_KEYS`), if given."""
        rows = tf.shape(real)[0]
        noise = self.normal_or_fed(fed, "noise_critic", rows, self.latent_dim)
        fake = tf.stop_gradient(self.decode_noise(noise, condition, training=True))
        if fed and "noise_mix" in fed:
            mix = tf.reshape(fed["noise_mix"], (-1, 1))
        else:
            mix = tf.random.stateless_uniform(tf.stack([rows, 1]), seed=self.next_seed(per_replica=True))
        real_input, fake_input = self.critic_input(real), self.critic_input(fake)
        interpolated = mix * real_input + (1.0 - mix) * fake_input
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:
                inner.watch(interpolated)
                score_mixed = self.critic([interpolated, condition], training=True)
            gradient = inner.gradient(score_mixed, interpolated)
            norm = tf.sqrt(tf.reduce_sum(tf.square(gradient), axis=1) + 1e-12)
            penalty = tf.reduce_mean(tf.square(norm - 1.0))
            score_real = self.critic([real_input, condition], training=True)
            score_fake = self.critic([fake_input, condition], training=True)
            wasserstein = tf.reduce_mean(score_real) - tf.reduce_mean(score_fake)
            loss = -wasserstein + self.gradient_penalty_weight * penalty + DRIFT_WEIGHT * tf.reduce_mean(score_real**2)
            loss = check_finite(loss, "critic loss")
            share = replica_share(loss)
        variables = self.critic.trainable_variables
        gradients = tape.gradient(share, variables)
        self.critic_optimizer.apply_gradients(zip(gradients, variables, strict=True))
        with tf.GradientTape() as tape:
            predicted = self.constrainer(self.absolute_features(real, condition), training=True)
            constrainer_loss = tf.reduce_mean(tf.square(predicted - condition))
            share = replica_share(constrainer_loss)
        variables = self.constrainer.trainable_variables
        self.constrainer_optimizer.apply_gradients(zip(tape.gradient(share, variables), variables, strict=True))
        self.update_metrics(
            {
                "critic_loss": loss,
                "wasserstein": wasserstein,
                "gradient_penalty": penalty,
                "constrainer_loss": constrainer_loss,
            }
        )

    def adversarial_loss(
        self, condition: tf.Tensor, fed: Mapping[str, tf.Tensor] | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(generator loss, constraint) of showers generated from fresh noise (``fed["noise_generator"]`` when
        given) for conditions (m, 1); call it inside the generator's gradient tape."""
        noise = self.normal_or_fed(fed, "noise_generator", tf.shape(condition)[0], self.latent_dim)
        fake = self.decode_noise(noise, condition, training=True)
        predicted = self.constrainer(self.absolute_features(fake, condition), training=False)
        constraint = tf.reduce_mean(tf.square(predicted - condition))
        score = self.critic([self.critic_input(fake), condition], training=False)
        loss = -tf.reduce_mean(score) + self.constraint_weight * constraint
        return loss, constraint

    def generator_terms(
        self, real: tf.Tensor, condition: tf.Tensor, fed: Mapping[str, tf.Tensor] | None = None
    ) -> dict[str, tf.Tensor]:
        """The generator loss ``"generator_loss"`` and its parts (scalars) for m real showers u (m, n * n) with
        conditions (m, 1) and the m rows of the fed noise (:data:`NOISE_KEYS`); call it inside the generator's
        gradient tape."""
        loss, constraint = self.adversarial_loss(condition, fed)
        return {"generator_loss": loss, "constraint": constraint}

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """``critic_steps`` critic updates, then one generator update (see the module docstring).

        The batch may hold the optional :data:`~caloml.models.crystal_showers.NOISE_KEYS` (fixed noise, one row per
        shower); each update takes the rows of its slice."""
        if self.critic_optimizer is None:
            raise RuntimeError("compile() the model before training")
        real, condition = self.batch_features(data)
        fed = self.fed_noise(data)
        size = tf.shape(real)[0] // self.critic_steps
        for step in range(self.critic_steps):
            rows = slice(step * size, (step + 1) * size)
            self.critic_update(real[rows], condition[rows], {key: value[rows] for key, value in fed.items()})
        with tf.GradientTape() as tape:
            terms = self.generator_terms(
                real[:size], condition[:size], {key: value[:size] for key, value in fed.items()}
            )
            share = replica_share(check_finite(terms["generator_loss"], "generator loss"))
        variables = self.generator_variables()
        gradients = tape.gradient(share, variables)
        self.generator_optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self.update_metrics(terms)
        return self.metric_results()

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            **attribute_config(self, "critic_steps gradient_penalty_weight constraint_weight critic_features"),
        }
