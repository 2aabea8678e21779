"""Trainable models: Keras 3 networks with their training steps.

* :mod:`~caloml.models.gan3d` - the conditional 3DGAN (:class:`GAN3D`, with :class:`Generator3D` and
  :class:`Discriminator3D`) generating 51 x 51 x 25 CLIC ECAL showers for a primary energy and an angle.
"""

from __future__ import annotations

from caloml.models.gan3d import GAN3D, Discriminator3D, Generator3D
from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet

__all__ = ["GAN3D", "Discriminator3D", "Generator3D", "TriforceCNN", "TriforceDNN", "TriforceGoogLeNet"]
