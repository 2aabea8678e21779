"""Trainable models: Keras 3 networks with their training steps, and the reconstruction baselines.

* :mod:`~caloml.models.gan3d` - the conditional 3DGAN (:class:`GAN3D`, with :class:`Generator3D` and
  :class:`Discriminator3D`) generating 51 x 51 x 25 CLIC ECAL showers for a primary energy and an angle
  (``docs/3dgan.md``);
* :mod:`~caloml.models.triforce_nets` - the Triforce reconstruction networks (:class:`TriforceDNN`,
  :class:`TriforceCNN`, :class:`TriforceGoogLeNet`), and :mod:`~caloml.models.baselines` their BDT, linear and
  XGBoost baselines (``docs/reconstruction.md``);
* :mod:`~caloml.models.pointflow` - CaloPointFlow, with its flows (:mod:`~caloml.models.flows`) and Monte-Carlo
  cell sampler (:mod:`~caloml.models.pointflow_sampler`) (``docs/pointflow.md``);
* :mod:`~caloml.models.base` - :class:`~caloml.models.base.CalomlModel`, the mixin they share (``docs/design.md``).
"""

from __future__ import annotations

from caloml.models.gan3d import GAN3D, Discriminator3D, Generator3D
from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet

__all__ = ["GAN3D", "Discriminator3D", "Generator3D", "TriforceCNN", "TriforceDNN", "TriforceGoogLeNet"]
