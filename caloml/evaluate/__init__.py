"""Evaluation of generated showers against a reference: observables, metrics, classifier test, report.

``python -m caloml.evaluate gen --generated FILE.h5 --reference FILE.h5 --out DIR`` or, in a notebook::

    from caloml.evaluate import evaluate_generated
    metrics = evaluate_generated("generated.h5", "reference.h5", "runs/eval", repeats=3)
    metrics["summary"]

Both files are in the same layout (LCD or CaloChallenge datasets 2 and 3); the report directory gets
``report.html`` (summary table first, plots as PNG files beside it) and ``metrics.json`` (every metric, see
:mod:`caloml.evaluate.report`). The modules, one concept each: :mod:`~caloml.evaluate.inputs` (opening and
checking the files), :mod:`~caloml.evaluate.features` (streamed per-event observables),
:mod:`~caloml.evaluate.comparison` (histograms, separation power, KS, binned means, correlations),
:mod:`~caloml.evaluate.two_sample` (the Keras classifier test), :mod:`~caloml.evaluate.gan_train_test`,
:mod:`~caloml.evaluate.plots`, :mod:`~caloml.evaluate.report` and :mod:`~caloml.evaluate.generative` (the suite);
:func:`learning_curve` (:mod:`~caloml.evaluate.learning_curve`) evaluates every kept checkpoint of 3DGAN runs.
Importing this package does not import TensorFlow; the classifier test loads it when it runs.
See ``docs/evaluation.md``.
"""

from __future__ import annotations

from caloml.evaluate.generative import EvaluationOptions, evaluate_generated
from caloml.evaluate.learning_curve import learning_curve
from caloml.evaluate.report import JSON_KEYS

__all__ = ["JSON_KEYS", "EvaluationOptions", "evaluate_generated", "learning_curve"]
