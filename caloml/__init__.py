"""caloml: machine-learning calorimetry with TensorFlow and Keras.

Energies are in GeV and angles in radians everywhere inside caloml; readers and writers convert the
files' own units (50 x GeV for the LCD cells, MeV for CaloChallenge) at the edges. Start at ``README.md``; the
layers and conventions are in ``docs/design.md``, the names each subpackage exports (``caloml.sim``,
``caloml.data``, ``caloml.models``, ...) in ``docs/python-api.md``, notebooks in ``examples/``. Importing caloml
does not import TensorFlow; ``caloml COMMAND`` (``python -m caloml``) runs the command lines.
"""

from caloml.quiet import quiet_tensorflow_logs

__version__ = "0.1.0"

quiet_tensorflow_logs()  # TensorFlow's start-up lines stay hidden unless asked for (docs/cli.md, verbosity)
