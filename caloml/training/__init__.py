"""The shared training machinery: configuration, strategies, run directories, the trainer.

See ``docs/training.md``.
"""
