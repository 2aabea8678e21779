"""The shared base of caloml's Keras models with their own losses (GAN3D, Triforce, CaloPointFlow, the crystal models).

:class:`CalomlModel` holds what every such model repeats: ``compile`` without a Keras loss (the optimizers are
built at once, so that a checkpoint restores their state), the compile-config round trip of ``.keras`` files, the
running-mean metric trackers, the seeded counter of stateless random draws, and the one Keras workaround (the
symbolic build of ``fit`` under ``tf.distribute``). A model keeps only its own maths. See ``docs/training.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import keras
import tensorflow as tf

from caloml.models.batch_contract import BatchContract

#: ``compile`` keywords a caloml model refuses: its losses and metrics are its own.
REFUSED_COMPILE_KEYS = ("loss", "loss_weights", "metrics", "weighted_metrics")


def attribute_config(owner: object, *names: str) -> dict[str, Any]:
    """``get_config`` entries ``{name: owner.<name>}`` for constructor arguments kept as attributes of that name.

    ``names`` are attribute names, several to a string when separated by spaces (``"name trainable seed"``).
    Tuples and lists are written as lists (what the JSON of a ``.keras`` file holds).
    """
    config: dict[str, Any] = {}
    for name in (name for group in names for name in group.split()):
        value = getattr(owner, name)
        config[name] = list(value) if isinstance(value, (tuple, list)) else value
    return config


# A mixin, not a keras.Model subclass: Keras turns the bases of a functional model's classes into Functional
# (``inject_functional_model_class``), which would change the base of every subclassed model sharing it.
if TYPE_CHECKING:
    from keras import Model as _KerasModel
else:
    _KerasModel = object


class CalomlModel(_KerasModel):
    """A Keras model trained through its own ``train_step``: compile, metrics, random draws (see the module docs).

    Use it before ``keras.Model`` in the bases: ``class GAN3D(CalomlModel, keras.Model)``. A subclass calls
    :meth:`track_metrics` in its constructor, optionally :meth:`add_draw_counter`, and updates
    the metrics with :meth:`update_metrics`. It overrides :meth:`default_optimizer` (Adam(1e-3) here), or
    :meth:`compile` and :meth:`compiled_optimizers` when it has several optimizers.
    """

    # ------------------------------------------------------------------ compile

    def default_optimizer(self) -> keras.optimizers.Optimizer:
        """The optimizer of ``compile()`` without one."""
        return keras.optimizers.Adam(1e-3)

    def compile(self, optimizer: Any = None, **kwargs: Any) -> None:
        """Set the optimizer (:meth:`default_optimizer` when None) and build its variables.

        The losses are the model's own: ``loss``, ``metrics`` and the like are refused (TypeError). Other keywords
        (``run_eagerly``, ``jit_compile``, ``steps_per_execution``) go to :meth:`keras.Model.compile`. Under
        ``tf.distribute`` call it inside the ``strategy.scope()`` the model was created in.
        """
        self.refuse_compile_losses(kwargs)
        optimizer = keras.optimizers.get(optimizer if optimizer is not None else self.default_optimizer())
        super().compile(optimizer=optimizer, **kwargs)
        optimizer.build(self.trainable_variables)

    def refuse_compile_losses(self, kwargs: dict[str, Any], also: Sequence[str] = ()) -> None:
        """TypeError when ``kwargs`` holds a Keras loss or metric argument (or one of ``also``); removes None ones."""
        for key in (*REFUSED_COMPILE_KEYS, *also):
            if kwargs.pop(key, None) is not None:
                raise TypeError(f"{type(self).__name__}.compile() takes no {key!r}: the model has its own losses")

    def compiled_optimizers(self) -> dict[str, Any]:
        """The optimizers set by ``compile``, by ``compile`` keyword (None before ``compile``)."""
        return {"optimizer": getattr(self, "optimizer", None)}  # Keras sets the attribute in compile

    def get_compile_config(self) -> dict[str, Any]:
        """Keras' compile config without the loss arguments, with the optimizers of :meth:`compiled_optimizers`."""
        optimizers = self.compiled_optimizers()
        if not self.compiled or any(optimizer is None for optimizer in optimizers.values()):
            return {}
        config = dict(super().get_compile_config() or {})
        for key in (*REFUSED_COMPILE_KEYS, "optimizer"):
            config.pop(key, None)
        for key, optimizer in optimizers.items():
            config[key] = keras.saving.serialize_keras_object(optimizer)
        return config

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Recompile a loaded model (the optimizers' state is then restored from the saved weights)."""
        self.compile(**keras.saving.deserialize_keras_object(dict(config)))

    # ------------------------------------------------------------------ batches

    def batch_contract(self) -> BatchContract | None:
        """The keys, shapes and units of the batches ``fit`` takes (None: not checked); see the model's docs."""
        return None

    def fit(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """``keras.Model.fit``, after checking ``x`` against :meth:`batch_contract` (one-line BatchContractError)."""
        contract = self.batch_contract()
        if contract is not None:
            contract.check_fit_input(x, y)
        if hasattr(x, "element_spec") and not args:
            kwargs.setdefault("shuffle", False)  # a dataset shuffles itself: Keras ignores the flag, with a warning
        return super().fit(x, y, *args, **kwargs)

    # ------------------------------------------------------------------ metrics

    def track_metrics(self, names: Sequence[str]) -> None:
        """Create one running mean (:class:`keras.metrics.Mean`) per name; they are :attr:`metrics`."""
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self._trackers.values())

    def update_metrics(self, values: Mapping[str, tf.Tensor], prefix: str = "") -> None:
        """Add per-example values (B,) to the metric ``prefix + name`` of every tracked ``name`` in ``values``.

        Per-example values: under ``tf.distribute`` the Mean trackers sum values and counts over the replicas, so
        the result is the mean over the global batch.
        """
        for name, value in values.items():
            tracker = self._trackers.get(f"{prefix}{name}")
            if tracker is not None:
                tracker.update_state(value)

    def metric_results(self) -> dict[str, tf.Tensor]:
        """The running means, by metric name (what ``train_step`` and ``test_step`` return)."""
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    # ------------------------------------------------------------------ random draws

    def add_draw_counter(self, seed: int) -> None:
        """Seed the model's stateless random draws by (``seed``, draw number).

        The draw number is the weight ``random_draws``: it is saved with the model (``.keras`` and checkpoints), so
        a resumed training draws new numbers. (Keras' ``SeedGenerator`` would do the same, but its state has another
        name and place in the saved files, so models saved before would no longer load.)
        """
        self.draw_seed = int(seed)
        self.random_draws = self.add_weight(
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="random_draws",
        )

    def next_seed(self, *, per_replica: bool = False) -> tf.Tensor:
        """Seed (2,) int64 of the next stateless draw, (``draw_seed``, draw number); advances the counter.

        ``per_replica``: folded with the replica id, so that under ``tf.distribute`` each replica draws different
        numbers.
        """
        draw = self.random_draws.value
        self.random_draws.assign_add(tf.ones_like(draw))
        seed = tf.stack([tf.constant(self.draw_seed, tf.int64), tf.cast(draw, tf.int64)])
        if not per_replica:
            return seed
        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group
        return tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int32))

    # ------------------------------------------------------------------ Keras workaround

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Skip ``fit``'s symbolic build when the model and its optimizers are built already (Keras 3.15).

        Keras 3.15 offers no public switch for it: before training under a ``tf.distribute`` strategy, ``fit``
        averages the first distributed batch over the replicas (``strategy.reduce("MEAN", batch)``) to build the
        model symbolically, even when it is built. That fails under ``MirroredStrategy`` on a bool batch entry (a
        point mask) and under ``MultiWorkerMirroredStrategy`` on any dict of per-replica tensors. caloml's models
        build every layer in their constructor and their optimizers in ``compile``, so the build is a no-op for
        them and is skipped; otherwise Keras' own runs.
        """
        optimizers = self.compiled_optimizers().values()
        if self.built and all(optimizer is not None and optimizer.built for optimizer in optimizers):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
