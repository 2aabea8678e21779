"""Training tasks: each binds a model to its data, configuration, default data and selection rule.

A task implements :class:`caloml.training.task.TrainingTask`; ``python -m caloml.train`` looks it up by name and
hands it to the shared trainer. See ``docs/training.md`` and, for adding one, ``docs/design.md``.
"""
