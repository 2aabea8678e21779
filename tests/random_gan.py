"""The full-size 3DGAN with random weights that the export and generation tests share: it tests the plumbing."""

from __future__ import annotations

from caloml.models.gan3d import GAN3D

#: The primary energies (GeV) and polar angles (rad) the random-weight generator is conditioned on.
ENERGY_RANGE_GEV = (10.0, 200.0)
THETA_RANGE_RAD = (1.2, 1.9)


def random_theta_gan(seed: int) -> GAN3D:
    """A full-size electron GAN3D with random weights drawn from ``seed``, conditioned on the true angle."""
    return GAN3D(
        particle="electron",
        condition_angle="theta",
        energy_range_gev=ENERGY_RANGE_GEV,
        theta_range_rad=THETA_RANGE_RAD,
        seed=seed,
    )
