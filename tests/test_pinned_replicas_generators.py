"""Equivalence of one training step on two logical CPU replicas and on one device, for the stochastic generators.

For the models that draw random numbers in their step: CaloPointFlow (the reparameterization eps
and the n_hits dequantization), the Calorimeter Pyramid's hit stages (Gumbel and count dequantization) and the
crystal WGAN, VAE and VAE + WGAN (fake-shower noise, the gradient penalty's mixing weights, the VAE's eps). Each
replica draws its own numbers (tests/test_pinned_replicas.py), so two replicas match one device only when the
draws are fed: every model takes optional fixed-noise batch keys (``NOISE_KEYS`` of its module), one row per
shower, which ``tf.distribute`` splits with the showers. With the same noise, one step on two replicas must give
every trainable variable the update of one device (relative error of each variable's update, never one norm over
all weights) and every reported loss. Plain SGD makes the update proportional to the gradient, so a per-replica
instead of a global-batch average (a factor 2) shows.

The crystal WGAN's step splits the batch into ``critic_steps`` consecutive slices; on two replicas each replica
slices its own half. The one-device batch is therefore the same showers in the order of the replicas' slices
(rows 0, 1, 4, 5 | 2, 3, 6, 7 of the distributed batch of 8 with two critic steps), with their noise rows.

Weights start from random values (the same on both sides): the flows start at the identity, where a wrong eps
would hardly change a gradient. The default run trains CaloPointFlow (with its cheaper affine flows) and the WGAN in
one subprocess (the CPU must be split into two logical devices before TensorFlow initializes); the Pyramid's hit
stages (three spline flows to trace), the VAE and the VAE + WGAN share a second one under ``-m slow``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from replica_equivalence import TINY_PYRAMID, split_cpu, variable_report
from worker_process import run_worker

BATCH = 8
# float32 sums over 4 or 8 showers in another order give a few 1e-7 relative, amplified through the flows' splines
# to 1e-5 (measured: PointFlow 7e-6, WGAN 1e-5) and 2.4e-4 on the Pyramid's radius embedding, whose gradient is a
# sum of nearly cancelling terms; a per-replica average (a factor 2) or other noise on one replica: 10-100%
UPDATE_TOLERANCE = 2e-3
LOSS_RTOL = 1e-4
# the one-device batch holds the distributed batch's rows in the order of the replicas' critic slices
CRITIC_SLICE_ORDER = [0, 1, 4, 5, 2, 3, 6, 7]


def _run_worker(mode: str, out_dir: Path) -> dict:
    run_worker(__file__, mode, out_dir)
    return json.loads((out_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_worker("quick", tmp_path_factory.mktemp("replicas_generators"))


def _assert_equivalent(report: dict, min_moved: int) -> None:
    """Every variable the step moved has the one-device update on two replicas; every loss is the same."""
    assert report["replicas"] == 2
    moved = {name: stats for name, stats in report["variables"].items() if stats["update_over_weights"] > 1e-7}
    assert len(moved) >= min_moved, report["variables"]
    for name, stats in moved.items():
        assert stats["update_mismatch"] < UPDATE_TOLERANCE, (name, stats)
    single, mirrored = report["history_single"], report["history_mirrored"]
    assert set(single) == set(mirrored)
    for key, value in single.items():
        np.testing.assert_allclose(mirrored[key], value, rtol=LOSS_RTOL, atol=1e-6, err_msg=key)


def test_pointflow_step_on_two_replicas_equals_one_device(quick: dict) -> None:
    report = quick["pointflow"]
    assert set(report["history_single"]) >= {"loss", "reconstruction", "prior", "entropy"}
    _assert_equivalent(report, min_moved=10)


def test_crystal_wgan_step_on_two_replicas_equals_one_device(quick: dict) -> None:
    report = quick["wgan"]
    assert set(report["history_single"]) >= {"critic_loss", "gradient_penalty", "generator_loss", "constraint"}
    _assert_equivalent(report, min_moved=8)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_worker("slow", tmp_path_factory.mktemp("replicas_generators_slow"))


@pytest.mark.slow
def test_pyramid_hit_stages_step_on_two_replicas_equals_one_device(slow: dict) -> None:
    # three spline flows: their tracing (single, then per replica) costs about 20 s of CPU
    report = slow["pyramid_hits"]
    assert set(report["history_single"]) >= {"loss", "layers", "radii", "angles"}
    assert all(report["history_single"][stage] != 0.0 for stage in ("layers", "radii", "angles"))
    _assert_equivalent(report, min_moved=10)


@pytest.mark.slow
def test_crystal_vae_step_on_two_replicas_equals_one_device(slow: dict) -> None:
    assert set(slow["vae"]["history_single"]) >= {"loss", "reconstruction", "kl"}
    _assert_equivalent(slow["vae"], min_moved=6)


@pytest.mark.slow
def test_crystal_vaewgan_step_on_two_replicas_equals_one_device(slow: dict) -> None:
    assert set(slow["vaewgan"]["history_single"]) >= {"generator_loss", "reconstruction", "kl", "critic_loss"}
    _assert_equivalent(slow["vaewgan"], min_moved=10)


# ---------------------------------------------------------------------------------------------------- worker


def _compare(strategy, build, batch: dict, single_rows: list[int] | None = None, scale: float = 0.3) -> dict:
    """One ``fit`` step of ``build()`` (a compiled model) on one device and under ``strategy``; the one-device
    batch takes the rows ``single_rows`` of ``batch`` (all, in order, when None)."""
    import tensorflow as tf

    def train(current, data: dict) -> dict:
        with current.scope():
            model = build()
        rng = np.random.default_rng(8)
        for variable in model.trainable_variables:
            variable.assign(rng.normal(0.0, scale, variable.shape).astype(np.float32))
        # by position: a second model's automatic layer names carry other numbers (dense_1 for dense)
        names = [f"{index}:{v.path}" for index, v in enumerate(model.trainable_variables)]
        initial = {name: v.numpy().copy() for name, v in zip(names, model.trainable_variables, strict=True)}
        history = model.fit(tf.data.Dataset.from_tensors(data), epochs=1, verbose=0).history
        return {
            "initial": initial,
            "final": {name: v.numpy() for name, v in zip(names, model.trainable_variables, strict=True)},
            "history": {key: float(values[-1]) for key, values in history.items()},
            "replicas": current.num_replicas_in_sync,
        }

    rows = list(range(BATCH)) if single_rows is None else single_rows
    single = train(tf.distribute.get_strategy(), {key: value[rows] for key, value in batch.items()})
    mirrored = train(strategy, batch)
    for (name, value), other in zip(single["initial"].items(), mirrored["initial"].values(), strict=True):
        assert np.array_equal(value, other), name
    mirrored["final"] = dict(zip(single["final"], mirrored["final"].values(), strict=True))
    return {
        "replicas": mirrored["replicas"],
        "variables": variable_report(single["initial"], single["final"], mirrored["final"]),
        "history_single": single["history"],
        "history_mirrored": mirrored["history"],
    }


def _pointflow(strategy) -> dict:
    import keras

    from caloml.models.pointflow import PointCloudNormalization, PointFlowVAE

    normalization = PointCloudNormalization(
        grid_shape=(6, 5, 4),
        point_mean=(3.0, 2.5, 2.0, -1.0),
        point_std=(1.5, 1.2, 0.9, 0.7),
        log_n_hits_mean=1.2,
        log_n_hits_std=0.4,
        log_total_energy_mean=0.5,
        log_total_energy_std=0.8,
        incident_energy_range_gev=(10.0, 100.0),
        log_incident_mean=3.5,
        log_incident_std=0.6,
    )
    rng = np.random.default_rng(2)
    max_points = 5
    n_hits = rng.integers(1, max_points + 1, BATCH).astype(np.int32)
    mask = np.arange(max_points)[None, :] < n_hits[:, None]
    points = np.zeros((BATCH, max_points, 4), np.float32)
    points[..., :3] = rng.uniform(0.0, 4.0, (BATCH, max_points, 3))
    points[..., 3] = rng.normal(-1.0, 0.7, (BATCH, max_points))
    points[~mask] = 0.0
    batch = {
        "points": points,
        "mask": mask,
        "n_hits": n_hits,
        "incident_energy": rng.uniform(12.0, 90.0, BATCH).astype(np.float32),
        "total_energy": np.array([np.exp(points[i, mask[i], 3]).sum() for i in range(BATCH)], np.float32),
        "noise_latent": rng.standard_normal((BATCH, 3)).astype(np.float32),
        "noise_n_hits": rng.uniform(0.0, 1.0, BATCH).astype(np.float32),
    }

    def build() -> keras.Model:
        model = PointFlowVAE(
            normalization,
            latent_dim=3,
            flow="maf",  # the draws are the model's, not the flow's: the cheaper flow keeps the default run short
            n_latent_layers=1,
            n_point_layers=1,
            n_bins=4,
            hidden_units=8,
            conditioner_blocks=1,
            encoder_units=(8,),
            seed=17,
        )
        model.compile(keras.optimizers.SGD(1e-3))
        return model

    return _compare(strategy, build, batch)


def _pyramid_hits(strategy) -> dict:
    import keras

    from caloml.models.pyramid import CalorimeterPyramid, PyramidStatistics

    rng = np.random.default_rng(4)
    grid = (6, 4, 3)  # (L, A, R)
    energy = np.exp(rng.uniform(0.0, np.log(100.0), 72)).astype(np.float32)
    hits = rng.random((72, *grid)) < 0.3
    hits[:, 1, 0, 0] = True
    cells = np.where(hits, np.exp(rng.normal(-4.0, 1.5, hits.shape)) + 1e-3, 0.0).astype(np.float32)
    statistics = PyramidStatistics.from_showers(cells[BATCH:], energy[BATCH:], 1e-3, (1.0, 100.0))
    n_layers, n_alpha, n_radius = grid
    batch = {
        "showers": cells[:BATCH],
        "incident_energy": energy[:BATCH],
        "noise_layers": rng.random((BATCH, n_layers)),
        "noise_layer_count": rng.random(BATCH),
        "noise_radii": rng.random((BATCH, n_layers, n_radius)),
        "noise_radius_count": rng.random((BATCH, n_layers)),
        "noise_angles": rng.random((BATCH, n_layers, n_alpha, n_radius)),
        "noise_angle_count": rng.random((BATCH, n_layers, n_radius)),
    }
    batch = {key: value.astype(np.float32) for key, value in batch.items()}

    def build() -> keras.Model:
        model = CalorimeterPyramid(
            statistics,
            **TINY_PYRAMID,
            train_stages=("layers", "radii", "angles"),
            seed=5,
        )
        model.compile(keras.optimizers.SGD(1e-3))
        return model

    return _compare(strategy, build, batch, scale=0.1)


def _crystal_batch(latent_dim: int) -> dict:
    rng = np.random.default_rng(3)
    energy = rng.uniform(0.6, 4.5, BATCH)
    profile = np.exp(-0.9 * np.hypot(*np.meshgrid(np.arange(5) - 2.0, np.arange(5) - 2.0)))
    fractions = profile[None] * rng.uniform(0.5, 1.5, (BATCH, 5, 5))
    fractions[:, 0, :2] = 0.0
    fractions *= 0.96 / fractions.sum(axis=(1, 2), keepdims=True)
    batch = {
        "showers": fractions * energy[:, None, None],
        "energy": energy,
        "noise_critic": rng.standard_normal((BATCH, latent_dim)),
        "noise_mix": rng.uniform(0.0, 1.0, BATCH),
        "noise_generator": rng.standard_normal((BATCH, latent_dim)),
        "noise_latent": rng.standard_normal((BATCH, latent_dim)),
    }
    return {key: value.astype(np.float32) for key, value in batch.items()}


CRYSTAL = {"latent_dim": 3, "hidden_units": 16, "hidden_layers": 1, "energy_range_gev": (0.5, 5.0), "seed": 21}


def _crystal(strategy, kind: str) -> dict:
    import keras

    from caloml.models.crystal_vae import CrystalVAE
    from caloml.models.crystal_vaewgan import CrystalVAEWGAN
    from caloml.models.crystal_wgan import CrystalWGAN

    def build() -> keras.Model:
        if kind == "vae":
            model = CrystalVAE(kl_anneal_steps=0, **CRYSTAL)
            model.compile(keras.optimizers.SGD(1e-3))
            return model
        model_class = CrystalWGAN if kind == "wgan" else CrystalVAEWGAN
        model = model_class(critic_steps=2, **CRYSTAL)
        model.compile(*(keras.optimizers.SGD(1e-3) for _ in range(3)))
        return model

    order = None if kind == "vae" else CRITIC_SLICE_ORDER
    return _compare(strategy, build, _crystal_batch(CRYSTAL["latent_dim"]), order, scale=0.2)


def _worker(mode: str, out_dir: Path) -> None:
    split_cpu()
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    if mode == "quick":
        report = {"pointflow": _pointflow(strategy), "wgan": _crystal(strategy, "wgan")}
    else:
        report = {
            "pyramid_hits": _pyramid_hits(strategy),
            "vae": _crystal(strategy, "vae"),
            "vaewgan": _crystal(strategy, "vaewgan"),
        }
    (out_dir / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]))
