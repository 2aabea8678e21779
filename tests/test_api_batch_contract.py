"""Every model's ``fit`` checks its batch: one line naming the missing key, the expected keys with units, and the
shapes it got; a matching batch still trains."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.models import (
    GAN3D,
    BatchContract,
    BatchContractError,
    BatchKey,
    CalorimeterPyramid,
    CrystalVAE,
    PointFlowVAE,
    TriforceDNN,
)

GAN_CONTRACT = BatchContract(
    "GAN3D", (BatchKey("ECAL", (51, 51, 25), "GeV"), BatchKey("energy", (), "GeV"), BatchKey("mtheta", (), "rad"))
)


def _gan_batch(n: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "ECAL": rng.exponential(0.01, (n, 51, 51, 25)).astype(np.float32),
        "energy": np.full(n, 100.0, np.float32),
        "mtheta": np.full(n, np.pi / 2, np.float32),
    }


def test_the_contract_names_the_missing_key_the_expected_units_and_what_it_got() -> None:
    batch = _gan_batch()
    del batch["mtheta"]
    with pytest.raises(BatchContractError) as error:
        GAN_CONTRACT.batch(batch)
    message = str(error.value)
    assert "\n" not in message
    assert message == (
        "GAN3D.fit: the batch has no key 'mtheta'; expected a dict of ECAL (B, 51, 51, 25) GeV, energy (B,) GeV,"
        " mtheta (B,) rad; got ECAL (4, 51, 51, 25), energy (4,)"
    )
    assert isinstance(error.value, CalomlError)
    assert isinstance(error.value, KeyError)


def test_the_contract_checks_shapes_and_refuses_arrays() -> None:
    batch = _gan_batch()
    assert GAN_CONTRACT.batch(batch) is batch
    assert GAN_CONTRACT.batch((batch,)) is batch  # Keras' (x,) form
    column = {**batch, "energy": batch["energy"][:, None], "ECAL": batch["ECAL"][..., None]}  # (B, 1), channel axis
    GAN_CONTRACT.batch(column)
    with pytest.raises(BatchContractError, match=r"key 'ECAL' has shape \(4, 25, 25, 25\), not \(B, 51, 51, 25\)"):
        GAN_CONTRACT.batch({**batch, "ECAL": batch["ECAL"][:, :25, :25]})
    with pytest.raises(BatchContractError, match=r"batches must be dicts; .* got a float32 ndarray of shape \(4, 51"):
        GAN_CONTRACT.batch(batch["ECAL"])
    ragged = BatchContract("M", (BatchKey("points", (None, 4), "GeV"),))
    ragged.batch({"points": tf.TensorSpec((None, None, 4))})
    with pytest.raises(BatchContractError, match=r"not \(B, None, 4\)"):
        ragged.batch({"points": np.zeros((2, 7, 3))})


def test_gan3d_fit_refuses_a_batch_without_the_angle_and_a_plain_array() -> None:
    model = GAN3D(seed=1)
    model.compile()
    batch = _gan_batch()
    missing = tf.data.Dataset.from_tensor_slices({k: v for k, v in batch.items() if k != "mtheta"}).batch(2)
    with pytest.raises(BatchContractError, match=r"no key 'mtheta'.*mtheta \(B,\) rad"):
        model.fit(missing, epochs=1, verbose=0)
    with pytest.raises(BatchContractError, match="batches must be dicts"):
        model.fit(batch["ECAL"], epochs=1, verbose=0)
    with pytest.raises(BatchContractError, match="no key 'energy'"):  # a custom loop calling train_step
        model.train_step({"ECAL": tf.constant(batch["ECAL"]), "mtheta": tf.constant(batch["mtheta"])})
    assert int(model.random_draws.numpy()) == 0, "nothing ran before the check"


def test_triforce_and_crystal_fit_check_their_batches() -> None:
    triforce = TriforceDNN(hidden_units=8, n_hidden_layers=1, seed=3)
    triforce.compile()
    with pytest.raises(BatchContractError, match=r"TriforceDNN.fit: the batch has no key 'HCAL'.*HCAL_E \(B,\) GeV"):
        triforce.fit({"ECAL": np.zeros((2, 25, 25, 25), np.float32)}, epochs=1, verbose=0)
    crystal = CrystalVAE(latent_dim=2, hidden_units=8, hidden_layers=1, seed=1)
    crystal.compile()
    showers = np.full((8, 5, 5), 0.01, np.float32)
    with pytest.raises(BatchContractError, match=r"key 'showers' has shape \(8, 3, 3\), not \(B, 5, 5\)"):
        crystal.fit({"showers": showers[:, :3, :3], "energy": np.ones(8, np.float32)}, epochs=1, verbose=0)
    history = crystal.fit({"showers": showers, "energy": np.ones(8, np.float32)}, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    ("model_class", "keys"),
    [
        (PointFlowVAE, ["points (B, None, 4)", "mask (B, None) bool", "incident_energy (B,) GeV"]),
        (CalorimeterPyramid, ["showers (B, None, None, None) GeV", "incident_energy (B,) GeV"]),
    ],
)
def test_the_point_cloud_and_pyramid_contracts_name_their_keys(model_class: type, keys: list[str]) -> None:
    contract = model_class.batch_contract(model_class.__new__(model_class))  # independent of the weights
    for key in keys:
        assert key in contract.describe()
    with pytest.raises(BatchContractError, match=f"{model_class.__name__}.fit: the batch has no key"):
        contract.batch({})


def test_a_traced_train_step_raises_the_same_one_line_error() -> None:
    crystal = CrystalVAE(latent_dim=2, hidden_units=8, hidden_layers=1, seed=1)
    crystal.compile()
    with pytest.raises(BatchContractError) as error:
        tf.function(crystal.train_step)({"showers": tf.zeros((4, 5, 5))})
    assert str(error.value) == (
        "CrystalVAE.fit: the batch has no key 'energy'; expected a dict of showers (B, 5, 5) GeV, energy (B,) GeV;"
        " got showers (4, 5, 5)"
    )
