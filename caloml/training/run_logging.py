"""What a run logs besides its checkpoints: the progress display and the TensorBoard logs, as Keras callbacks.

:func:`logging_callbacks` is the trainer's one call; ``fit`` then runs with ``verbose=0`` (the progress display is
:class:`~caloml.training.progress_callback.TrainingProgress`). See ``docs/training.md`` (logs and TensorBoard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from caloml.training.config import config_to_dict
from caloml.training.progress_callback import TrainingProgress, progress_mode
from caloml.training.tensorboard import SampleFunction, TensorBoardLogger, flat_hparams


def logging_callbacks(
    task: Any, config: Any, data: Any, *, log_dir: Path, chief: bool
) -> list[keras.callbacks.Callback]:
    """The progress display and the TensorBoard logger of a run, in this order.

    The TensorBoard logger writes to ``log_dir``; the hyperparameters and, for a task with
    ``tensorboard_samples(model, config, data)``, the per-epoch shower image and histograms only on the chief.
    """
    samples: SampleFunction | None = None
    hook = getattr(task, "tensorboard_samples", None)
    if chief and callable(hook):

        def samples(model: keras.Model) -> Any:
            return hook(model, config, data)

    tensorboard = TensorBoardLogger(
        log_dir,
        update_freq=int(getattr(config.trainer, "tensorboard_update_freq", 10)),
        hparams=flat_hparams(config_to_dict(config)) if chief else None,
        samples=samples,
        run_name=Path(config.runtime.run_dir).name,
    )
    return [TrainingProgress(progress_mode(config.runtime.progress)), tensorboard]
