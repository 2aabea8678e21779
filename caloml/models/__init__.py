"""Trainable models: Keras 3 networks with their training steps, and the reconstruction baselines.

* :mod:`~caloml.models.gan3d` - the conditional 3DGAN (:class:`GAN3D`, with :class:`Generator3D` and
  :class:`Discriminator3D`) generating 51 x 51 x 25 CLIC ECAL showers for a primary energy and an angle
  (``docs/3dgan.md``);
* :mod:`~caloml.models.triforce_nets` - the Triforce reconstruction networks (:class:`TriforceDNN`,
  :class:`TriforceCNN`, :class:`TriforceGoogLeNet`), and :mod:`~caloml.models.baselines` their BDT, linear and
  XGBoost baselines (:class:`BDTClassifier`, :class:`LinearEnergyRegression`, :class:`XGBoostEnergyRegression`)
  (``docs/reconstruction.md``);
* :mod:`~caloml.models.pointflow` - CaloPointFlow (:class:`PointFlowVAE`), with its flows
  (:mod:`~caloml.models.flows`) and Monte-Carlo cell sampler (:class:`PointFlowShowerSampler`)
  (``docs/pointflow.md``);
* :mod:`~caloml.models.pyramid` - the Calorimeter Pyramid (:class:`CalorimeterPyramid`) (``docs/pyramid.md``);
* :mod:`~caloml.models.crystal_wgan`, :mod:`~caloml.models.crystal_vae`, :mod:`~caloml.models.crystal_vaewgan` -
  the crystal-5x5 generators (:class:`CrystalWGAN`, :class:`CrystalVAE`, :class:`CrystalVAEWGAN`)
  (``docs/vaewgan.md``);
* :mod:`~caloml.models.base` - :class:`CalomlModel`, the mixin they share, and
  :mod:`~caloml.models.batch_contract` - the batch each model's ``fit`` takes (``docs/design.md``).

Each model's ``fit`` takes dict batches whose keys and units its docs page lists ("fit contract"); a batch without
them is refused with one line (:class:`BatchContractError`). Importing this package imports TensorFlow.
"""

from __future__ import annotations

from caloml.models.base import CalomlModel
from caloml.models.baselines import BDTClassifier, LinearEnergyRegression, XGBoostEnergyRegression, load_baseline
from caloml.models.batch_contract import BatchContract, BatchContractError, BatchKey
from caloml.models.crystal_vae import CrystalVAE
from caloml.models.crystal_vaewgan import CrystalVAEWGAN
from caloml.models.crystal_wgan import CrystalWGAN
from caloml.models.gan3d import GAN3D, Discriminator3D, Generator3D
from caloml.models.pointflow import PointFlowVAE
from caloml.models.pointflow_sampler import PointFlowShowerSampler
from caloml.models.pyramid import CalorimeterPyramid
from caloml.models.triforce import TriforceModel
from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet

__all__ = [
    "GAN3D",
    "BDTClassifier",
    "BatchContract",
    "BatchContractError",
    "BatchKey",
    "CalomlModel",
    "CalorimeterPyramid",
    "CrystalVAE",
    "CrystalVAEWGAN",
    "CrystalWGAN",
    "Discriminator3D",
    "Generator3D",
    "LinearEnergyRegression",
    "PointFlowShowerSampler",
    "PointFlowVAE",
    "TriforceCNN",
    "TriforceDNN",
    "TriforceGoogLeNet",
    "TriforceModel",
    "XGBoostEnergyRegression",
    "load_baseline",
]
