"""The Calorimeter Pyramid training task (``python -m caloml.train pyramid``): configuration (:mod:`.config`),
data (:mod:`.data`) and the task bound to the shared trainer (:mod:`.task`). See ``docs/pyramid.md``."""
