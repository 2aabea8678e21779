"""The crystal-array generators' training tasks (``wgan``, ``vae``, ``vaewgan``); see ``docs/vaewgan.md``."""

from caloml.tasks.crystal.task import VAE_TASK, VAEWGAN_TASK, WGAN_TASK, CrystalTask

__all__ = ["VAEWGAN_TASK", "VAE_TASK", "WGAN_TASK", "CrystalTask"]
