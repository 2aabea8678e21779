"""The shared training machinery: configuration, strategies, run directories, the trainer."""
