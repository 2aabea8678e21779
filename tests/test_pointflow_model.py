"""CaloPointFlow model (caloml.models.pointflow): normalization, encoder invariances, ELBO, training, sampling, saving.

A tiny synthetic point-cloud set (a 6 x 5 x 4 grid, at most 12 hits per shower, the centre of gravity and the hit
energies growing with the incident energy) and tiny networks keep every check to seconds on a CPU.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from caloml.errors import CalomlError
from caloml.models.pointflow import METRIC_NAMES, PointCloudNormalization, PointFlowVAE

GRID = (6, 5, 4)
MAX_POINTS = 12
LATENT_DIM = 3
TINY = {
    "latent_dim": LATENT_DIM,
    "n_latent_layers": 2,
    "n_point_layers": 2,
    "n_bins": 4,
    "hidden_units": 16,
    "conditioner_blocks": 1,
    "encoder_units": (16,),
}


def synthetic_showers(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` point-cloud showers in the model's batch format (data units: cell coordinates, log GeV)."""
    rng = np.random.default_rng(seed)
    incident = rng.uniform(10.0, 100.0, n)
    n_hits = rng.integers(3, MAX_POINTS + 4, n)
    points = np.zeros((n, MAX_POINTS, 4), np.float32)
    mask = np.zeros((n, MAX_POINTS), bool)
    for i in range(n):
        k = min(n_hits[i], MAX_POINTS)
        centre = [3.0, 2.5, 0.5 + math.log(incident[i]) / 2.5]
        cells = np.clip(rng.normal(centre, [0.8, 0.7, 0.5], (k, 3)), 0.0, np.array(GRID) - 1e-3)
        points[i, :k, :3] = cells
        points[i, :k, 3] = rng.normal(math.log(incident[i] / 10.0), 0.5, k)
        mask[i, :k] = True
    total = np.array([np.exp(points[i, mask[i], 3]).sum() for i in range(n)])
    return {
        "points": points,
        "mask": mask,
        "n_hits": n_hits.astype(np.int32),
        "incident_energy": incident.astype(np.float32),
        "total_energy": total.astype(np.float32),
    }


def _normalization(data: dict[str, np.ndarray]) -> PointCloudNormalization:
    return PointCloudNormalization.from_data(
        data["points"], data["mask"], data["n_hits"], data["total_energy"], data["incident_energy"], GRID
    )


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return synthetic_showers(64)


@pytest.fixture(scope="module")
def normalization(data: dict[str, np.ndarray]) -> PointCloudNormalization:
    return _normalization(data)


@pytest.fixture(scope="module")
def fresh(normalization: PointCloudNormalization) -> PointFlowVAE:
    """An untrained model (identity flows, random encoder) for read-only checks."""
    return PointFlowVAE(normalization, seed=3, **TINY)


@pytest.fixture(scope="module")
def randomized(normalization: PointCloudNormalization) -> PointFlowVAE:
    """A spline ("rqs") model with every weight drawn at random: non-trivial flows without training."""
    model = PointFlowVAE(normalization, seed=8, **TINY)
    rng = np.random.default_rng(8)
    for weight in model.trainable_weights:
        weight.assign(rng.normal(0.0, 0.15, weight.shape))
    return model


@pytest.fixture(scope="module")
def trained(data: dict[str, np.ndarray], normalization: PointCloudNormalization) -> tuple[PointFlowVAE, list[float]]:
    """A tiny model after 12 epochs x 5 steps of ``fit`` (graph mode), with its per-epoch losses.

    The autoregressive flows: their training graph builds in a few seconds, the spline ones' in tens of seconds on
    a CPU (the TFP spline op graph is large); spline training is checked eagerly below and with ``fit`` in the slow
    distributed test.
    """
    model = PointFlowVAE(normalization, seed=4, flow="maf", **TINY)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    dataset = tf.data.Dataset.from_tensor_slices(data).shuffle(64, seed=1).batch(16, drop_remainder=True).repeat()
    history = model.fit(dataset, steps_per_epoch=5, epochs=12, verbose=0, shuffle=False)
    assert set(history.history) == set(METRIC_NAMES)
    return model, [float(v) for v in history.history["loss"]]


# ---------------------------------------------------------------------------------------------- normalization


def test_normalization_statistics_and_round_trip(data: dict[str, np.ndarray]) -> None:
    norm = _normalization(data)
    real = data["points"][data["mask"]].astype(np.float64)
    np.testing.assert_allclose(norm.point_mean, real.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.point_std, real.std(axis=0), rtol=1e-12)
    assert norm.log_n_hits_mean == pytest.approx(np.log(data["n_hits"]).mean())
    assert norm.log_total_energy_std == pytest.approx(np.log(data["total_energy"].astype(np.float64)).std())
    assert norm.incident_energy_range_gev == (data["incident_energy"].min(), data["incident_energy"].max())
    assert norm.grid_shape == GRID
    assert norm.n_cells == 120
    restored = PointCloudNormalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert restored == norm


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["points"].__setitem__((2, 0, 1), np.nan), "non-finite point in shower 2"),
        (lambda d: (d["mask"].__setitem__(5, False), d["n_hits"].__setitem__(5, 0)), "shower 5 has no hits"),
        (lambda d: d["total_energy"].__setitem__(1, 0.0), "total_energy_gev must be finite and positive"),
        (lambda d: d["incident_energy"].__setitem__(3, -1.0), "incident_energy_gev must be finite and positive"),
        (lambda d: d.__setitem__("mask", d["mask"][:, :5]), r"mask \(64, 5\)"),
    ],
)
def test_normalization_refuses_bad_data(data: dict[str, np.ndarray], change, message: str) -> None:
    bad = {key: value.copy() for key, value in data.items()}
    change(bad)
    with pytest.raises(CalomlError, match=message):
        _normalization(bad)


def test_nan_in_padding_is_accepted(data: dict[str, np.ndarray]) -> None:
    padded = {key: value.copy() for key, value in data.items()}
    padded["points"][~padded["mask"]] = np.nan
    assert _normalization(padded) == _normalization(data)


# ---------------------------------------------------------------------------------------------- encoder and loss


def test_encoder_is_permutation_invariant_and_ignores_padding(fresh: PointFlowVAE, data: dict[str, np.ndarray]) -> None:
    batch = {key: value[:8] for key, value in data.items()}
    mean, log_var = fresh.encode(batch["points"], batch["mask"], batch["n_hits"], batch["total_energy"])
    assert mean.shape == (8, LATENT_DIM + 2)
    assert log_var.shape == (8, LATENT_DIM + 2)
    np.testing.assert_array_equal(log_var.numpy()[:, -2:], 0.0)

    rng = np.random.default_rng(9)
    width = MAX_POINTS + 5  # wider padding, garbage (NaN, huge values) in every padded slot, points shuffled
    points = rng.normal(0.0, 1e6, (8, width, 4)).astype(np.float32)
    points[:, ::3] = np.nan
    mask = np.zeros((8, width), bool)
    for i in range(8):
        real = batch["points"][i][batch["mask"][i]]
        slots = rng.permutation(width)[: len(real)]
        points[i, slots] = real[rng.permutation(len(real))]
        mask[i, slots] = True
    shuffled_mean, shuffled_log_var = fresh.encode(points, mask, batch["n_hits"], batch["total_energy"])
    np.testing.assert_allclose(shuffled_mean.numpy(), mean.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shuffled_log_var.numpy(), log_var.numpy(), rtol=1e-5, atol=1e-5)
    # the loss and its gradients do not see the garbage either
    garbage = dict(batch, points=points, mask=mask)
    seed = tf.constant([1, 2])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(fresh.elbo_terms(garbage, seed)["loss"])
    gradients = tape.gradient(loss, fresh.trainable_variables)
    assert all(np.isfinite(g.numpy()).all() for g in gradients)
    np.testing.assert_allclose(loss.numpy(), tf.reduce_mean(fresh.elbo_terms(batch, seed)["loss"]).numpy(), rtol=1e-5)


def test_elbo_terms(normalization: PointCloudNormalization, data: dict[str, np.ndarray]) -> None:
    batch = {key: value[:6] for key, value in data.items()}
    seed = tf.constant([3, 4])
    totals = {}
    for weighting in ("sum", "per_dimension"):
        model = PointFlowVAE(normalization, seed=3, loss_weighting=weighting, **TINY)
        terms = {key: value.numpy() for key, value in model.elbo_terms(batch, seed).items()}
        assert set(terms) == set(METRIC_NAMES)
        assert all(value.shape == (6,) and np.isfinite(value).all() for value in terms.values())
        _, log_var = model.encode(batch["points"], batch["mask"], batch["n_hits"], batch["total_energy"])
        expected_entropy = -0.5 * LATENT_DIM * (1 + math.log(2 * math.pi)) - 0.5 * log_var.numpy()[:, :-2].sum(-1)
        np.testing.assert_allclose(terms["entropy"], expected_entropy, rtol=1e-5, atol=1e-5)
        totals[weighting] = terms
    plain, weighted = totals["sum"], totals["per_dimension"]
    np.testing.assert_allclose(plain["loss"], plain["reconstruction"] + plain["prior"] + plain["entropy"], rtol=1e-6)
    np.testing.assert_allclose(
        weighted["loss"],
        plain["reconstruction"] / 4 + plain["prior"] / (LATENT_DIM + 2) + plain["entropy"] / LATENT_DIM,
        rtol=1e-5,
    )
    # new flows are the identity: the reconstruction is the Gaussian density of the normalized points, in data
    # units (minus sum log point_std per point) ...
    normalized = (batch["points"] - np.array(normalization.point_mean)) / np.array(normalization.point_std)
    gaussian = stats.norm.logpdf(normalized).sum(-1) - np.log(normalization.point_std).sum()
    np.testing.assert_allclose(plain["reconstruction"], -np.where(batch["mask"], gaussian, 0).sum(1), rtol=1e-4)
    # ... and the prior the standard normal density of z, rebuilt from the same seed (eps: fold 0, the n_hits
    # dequantization: fold 1)
    mean, log_var = model.encode(batch["points"], batch["mask"], batch["n_hits"], batch["total_energy"])
    seed64 = tf.cast(seed, tf.int64)
    eps = tf.random.stateless_normal([6, LATENT_DIM], seed=tf.random.experimental.stateless_fold_in(seed64, 0))
    noise = tf.random.stateless_uniform([6], seed=tf.random.experimental.stateless_fold_in(seed64, 1)).numpy()
    z = mean.numpy().copy()
    z[:, :-2] += np.exp(0.5 * log_var.numpy()[:, :-2]) * eps.numpy()
    log_n = np.log(batch["n_hits"] - 0.5 + noise)
    z[:, -2] = (log_n - normalization.log_n_hits_mean) / normalization.log_n_hits_std
    np.testing.assert_allclose(plain["prior"], -stats.norm.logpdf(z).sum(-1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        plain["prior"], -model.latent_log_prob(z, batch["incident_energy"]).numpy(), rtol=1e-5, atol=1e-5
    )


def test_empty_shower_gives_finite_loss(fresh: PointFlowVAE, data: dict[str, np.ndarray]) -> None:
    batch = {key: value[:3].copy() for key, value in data.items()}
    batch["mask"][1] = False
    batch["points"][1] = np.nan
    batch["n_hits"][1] = 0
    batch["total_energy"][1] = 0.0
    with tf.GradientTape() as tape:
        terms = fresh.elbo_terms(batch, tf.constant([0, 1]))
        loss = tf.reduce_mean(terms["loss"])
    assert all(np.isfinite(value.numpy()).all() for value in terms.values())
    assert terms["reconstruction"].numpy()[1] == 0.0
    assert all(np.isfinite(g.numpy()).all() for g in tape.gradient(loss, fresh.trainable_variables))


# ---------------------------------------------------------------------------------------------- densities


def test_point_density_is_in_data_units(fresh: PointFlowVAE, normalization: PointCloudNormalization) -> None:
    """With identity flows the point density is the product of N(mean, std) in data units (normalization Jacobian)."""
    points = np.random.default_rng(2).normal(2.0, 1.5, (2, 7, 4)).astype(np.float32)
    z = np.zeros((2, LATENT_DIM + 2), np.float32)
    expected = stats.norm.logpdf(points, normalization.point_mean, normalization.point_std).sum(-1)
    np.testing.assert_allclose(fresh.point_log_prob(points, z).numpy(), expected, rtol=1e-5, atol=1e-4)
    latent = np.random.default_rng(3).normal(size=(4, LATENT_DIM + 2)).astype(np.float32)
    energies = np.array([20.0, 30.0, 40.0, 50.0], np.float32)
    np.testing.assert_allclose(
        fresh.latent_log_prob(latent, energies).numpy(), stats.norm.logpdf(latent).sum(-1), rtol=1e-5, atol=1e-5
    )


# ---------------------------------------------------------------------------------------------- training


def test_training_lowers_the_negative_elbo(trained: tuple[PointFlowVAE, list[float]]) -> None:
    model, losses = trained
    assert len(losses) == 12
    assert np.isfinite(losses).all()
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < first - 2.0, losses
    assert int(model.random_draws.numpy()) == 60  # one draw per step


def test_evaluate_reports_the_elbo_terms(
    trained: tuple[PointFlowVAE, list[float]], data: dict[str, np.ndarray]
) -> None:
    model, _ = trained
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(32)
    results = model.evaluate(dataset, verbose=0, return_dict=True)
    assert set(results) == set(METRIC_NAMES)
    assert np.isfinite(list(results.values())).all()
    assert results["loss"] == pytest.approx(results["reconstruction"] + results["prior"] + results["entropy"], rel=1e-5)


def _model(request: pytest.FixtureRequest, which: str) -> PointFlowVAE:
    return request.getfixturevalue("trained")[0] if which == "trained-maf" else request.getfixturevalue("randomized")


@pytest.mark.parametrize("which", ["trained-maf", "randomized-rqs"])
def test_save_and_load_round_trip(
    request: pytest.FixtureRequest, which: str, data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    model = _model(request, which)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, PointFlowVAE)
    assert loaded.get_config() == model.get_config()
    assert loaded.normalization == model.normalization
    assert loaded.grid_shape == GRID
    batch = {key: value[:5] for key, value in data.items()}
    for a, b in zip(
        model.encode(batch["points"], batch["mask"], batch["n_hits"], batch["total_energy"]),
        loaded.encode(batch["points"], batch["mask"], batch["n_hits"], batch["total_energy"]),
        strict=True,
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    z = model.sample_latent(batch["incident_energy"], tf.constant([1, 2]))["z"]
    np.testing.assert_array_equal(
        loaded.point_log_prob(batch["points"], z).numpy(), model.point_log_prob(batch["points"], z).numpy()
    )
    np.testing.assert_array_equal(
        loaded.sample_latent(batch["incident_energy"], tf.constant([1, 2]))["z"].numpy(), z.numpy()
    )
    if which == "trained-maf":
        assert int(loaded.optimizer.iterations.numpy()) == 60
        assert int(loaded.random_draws.numpy()) == int(model.random_draws.numpy()) >= 60


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("which", ["trained-maf", "randomized-rqs"])
def test_sample_latent_and_points(request: pytest.FixtureRequest, which: str) -> None:
    model = _model(request, which)
    energies = np.array([10.5, 35.0, 70.0, 99.0], np.float32)
    seed = tf.constant([7, 8], tf.int32)
    latent = model.sample_latent(energies, seed)
    assert set(latent) == {"z", "n_hits", "total_energy"}
    assert latent["z"].shape == (4, LATENT_DIM + 2)
    assert latent["z"].dtype == tf.float32
    assert latent["n_hits"].shape == (4,)
    assert latent["n_hits"].dtype == tf.int32
    assert latent["total_energy"].shape == (4,)
    assert latent["total_energy"].dtype == tf.float32
    n_hits = latent["n_hits"].numpy()
    assert (n_hits >= 1).all()
    assert (n_hits <= 120).all()
    assert (latent["total_energy"].numpy() > 0).all()
    norm = model.normalization
    log_n = latent["z"].numpy()[:, -2] * norm.log_n_hits_std + norm.log_n_hits_mean
    np.testing.assert_array_equal(n_hits, np.clip(np.round(np.exp(log_n)), 1, 120))
    again = model.sample_latent(energies, seed)
    np.testing.assert_array_equal(again["z"].numpy(), latent["z"].numpy())

    points, log_density = model.sample_points(latent["z"], 50, tf.constant([9, 10]))
    assert points.shape == (4, 50, 4)
    assert points.dtype == tf.float32
    assert log_density.shape == (4, 50)
    assert log_density.dtype == tf.float32
    assert np.isfinite(points.numpy()).all()
    assert np.isfinite(log_density.numpy()).all()
    np.testing.assert_allclose(
        model.point_log_prob(points, latent["z"]).numpy(), log_density.numpy(), rtol=1e-4, atol=1e-3
    )
    if which == "trained-maf":  # the points follow the data roughly: cell coordinates mostly near the grid
        inside = (points.numpy()[..., :3] >= -1) & (points.numpy()[..., :3] <= np.array(GRID) + 1)
        assert inside.mean() > 0.9


def test_sampling_in_graph_mode_matches_eager(randomized: PointFlowVAE) -> None:
    """The generation path of the default (spline) flows inside a tf.function, as the sampler and export use it."""
    model = randomized

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([2], tf.int32)])
    def generate(energies: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        latent = model.sample_latent(energies, seed)
        points, log_density = model.sample_points(latent["z"], 20, seed)
        return latent["n_hits"], points, log_density

    energies = np.array([20.0, 80.0], np.float32)
    seed = tf.constant([3, 1], tf.int32)
    n_hits, points, log_density = generate(energies, seed)
    latent = model.sample_latent(energies, seed)
    eager_points, eager_log_density = model.sample_points(latent["z"], 20, seed)
    np.testing.assert_array_equal(n_hits.numpy(), latent["n_hits"].numpy())
    np.testing.assert_allclose(points.numpy(), eager_points.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_density.numpy(), eager_log_density.numpy(), rtol=1e-5, atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"outside the trained range \[10\.\d+, 99\.\d+\] GeV"):
        generate(np.array([20.0, 500.0], np.float32), seed)


def test_incident_energy_outside_the_trained_range(fresh: PointFlowVAE) -> None:
    low, high = fresh.normalization.incident_energy_range_gev
    fresh.check_incident_energy([low, high, np.float32(low), np.float32(high)])
    for bad in (low * 0.99, high * 1.01, np.nan, np.inf):
        with pytest.raises(CalomlError, match="outside the range the PointFlow model was trained on"):
            fresh.sample_latent(np.array([50.0, bad]), tf.constant([0, 0]))


def test_config_round_trip_and_arguments(normalization: PointCloudNormalization) -> None:
    model = PointFlowVAE(normalization.to_dict(), seed=5, flow="maf", loss_weighting="per_dimension", **TINY)
    clone = PointFlowVAE.from_config(json.loads(json.dumps(model.get_config())))
    assert clone.get_config() == model.get_config()
    assert clone.normalization == normalization
    with pytest.raises(ValueError, match="flow must be one of"):
        PointFlowVAE(normalization, flow="nice")
    with pytest.raises(ValueError, match="loss_weighting"):
        PointFlowVAE(normalization, loss_weighting="mean")
    with pytest.raises(CalomlError, match="missing keys"):
        PointFlowVAE({"grid_shape": [1, 2, 3]})
    # a model saved before the coupling rule existed reloads with the splits it was trained with
    legacy = model.get_config() | {"flow": "rqs"}
    del legacy["coupling_rule"]
    old = PointFlowVAE.from_config(legacy)
    assert old.coupling_rule == old.point_flow.coupling_rule == old.latent_flow.coupling_rule == "legacy"
    assert PointFlowVAE.from_config(legacy | {"coupling_rule": "alternating"}).point_flow.coupling_rule == "alternating"


def test_spline_variant_training_steps(normalization: PointCloudNormalization, data: dict[str, np.ndarray]) -> None:
    """The spline flows (the default): eager gradient steps on a fixed batch and seed lower the loss."""
    model = PointFlowVAE(normalization, seed=6, **dict(TINY, n_latent_layers=1))
    optimizer = keras.optimizers.Adam(2e-2)
    batch = {key: value[:16] for key, value in data.items()}
    seed = tf.constant([1, 1])
    losses = []
    for _ in range(4):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.elbo_terms(batch, seed)["loss"])
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] - 2.0, losses


@pytest.mark.slow
def test_training_under_mirrored_strategy(tmp_path: Path) -> None:
    """fit on two CPU replicas (a subprocess: one MirroredStrategy per process): finite, decreasing metrics."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_pointflow_model import TINY, synthetic_showers, _normalization
        from caloml.models.pointflow import PointFlowVAE
        data = synthetic_showers(64)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = PointFlowVAE(_normalization(data), seed=4, **TINY)
            model.compile(optimizer=__import__("keras").optimizers.Adam(3e-3))
        dataset = tf.data.Dataset.from_tensor_slices(data).batch(16, drop_remainder=True).repeat()
        history = model.fit(dataset, steps_per_epoch=4, epochs=4, verbose=0, shuffle=False)
        json.dump({{"loss": history.history["loss"], "draws": int(model.random_draws.numpy())}}, sys.stdout)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=900)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.isfinite(out["loss"]).all()
    assert out["loss"][-1] < out["loss"][0]
    assert out["draws"] == 16


def test_point_clouds_from_the_data_pipeline(calochallenge_events: dict) -> None:
    """Point clouds of the data side (ToPointCloud on CaloChallenge dataset-2 showers) go through the model."""
    from caloml.data.transforms import ToPointCloud
    from caloml.geometry import CALOCHALLENGE_2

    grid = tuple(CALOCHALLENGE_2.shape)
    clouds = ToPointCloud("showers", max_points=64, seed=1).numpy(dict(calochallenge_events))
    cells = calochallenge_events["showers"].reshape(-1, *grid)
    keep = clouds["n_hits"] > 0
    batch = {
        "points": clouds["points"][keep],
        "mask": clouds["mask"][keep],
        "n_hits": clouds["n_hits"][keep],
        "incident_energy": calochallenge_events["incident_energies"].reshape(-1)[keep],
        "total_energy": cells.reshape(len(cells), -1).sum(axis=1)[keep],
    }
    norm = PointCloudNormalization.from_data(
        batch["points"], batch["mask"], batch["n_hits"], batch["total_energy"], batch["incident_energy"], grid
    )
    model = PointFlowVAE(norm, seed=2, **TINY)
    assert model.grid_shape == grid
    terms = model.elbo_terms({key: value[:8] for key, value in batch.items()}, tf.constant([0, 0]))
    assert all(np.isfinite(value.numpy()).all() for value in terms.values())
    latent = model.sample_latent(batch["incident_energy"][:3], tf.constant([1, 0]))
    assert (latent["n_hits"].numpy() <= np.prod(grid)).all()
    points, log_density = model.sample_points(latent["z"], 100, tf.constant([2, 0]))
    assert points.shape == (3, 100, 4)
    assert np.isfinite(log_density.numpy()).all()
