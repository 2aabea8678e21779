"""Training tasks: each binds a model to its data, the shared trainer and its export (see caloml.training.task)."""
