"""Saved models keep loading: every caloml layer's ``get_config`` writes the keys it has always written, and
``from_config`` rebuilds a layer with the same config (through JSON, as in a ``.keras`` file)."""

from __future__ import annotations

import json
from typing import Any

import keras
import pytest
from test_pointflow_model import TINY, _normalization, synthetic_showers

from caloml.models.flows import ConditionalFlow
from caloml.models.gan3d import GAN3D
from caloml.models.pointflow import PointFlowVAE
from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet

LAYER = "dtype name trainable"
TRIFORCE = "angle_scale cell_scale energy_loss_weight energy_scale_gev initial_energy_coefficients micro_batch_size"
#: The config keys of each caloml layer, as ``.keras`` files saved so far hold them.
SAVED_KEYS = {
    "AutoregressiveLayer": f"{LAYER} context_dim event_dim hidden_units log_scale_clamp n_hidden order seed",
    "ConditionalFlow": f"{LAYER} context_dim coupling_rule event_dim flow hidden_units n_bins n_blocks n_layers seed"
    " spline_bound",
    "Discriminator3D": "batchnorm_synchronized dropout name power seed trainable",
    "GAN3D": "batchnorm_synchronized condition_angle discriminator dropout energy_range_gev energy_scale_gev generator"
    " label_flip_probability latent_size loss_weights name particle power seed theta_range_rad trainable",
    "Generator3D": "batchnorm_synchronized float32_tail latent_size name seed trainable",
    "Inception3D": f"{LAYER} factorized_5x5 seed widths",
    "MADE": f"{LAYER} activation context_dim event_dim hidden_units n_hidden n_params order seed",
    "MaskedDense": f"{LAYER} input_degrees output_degrees seed strict zero_init",
    "PointEncoder": f"{LAYER} activation encoder_units latent_dim seed sum_scale",
    "PointFlowVAE": "conditioner_blocks coupling_rule encoder_units flow hidden_units latent_dim loss_weighting n_bins"
    " n_latent_layers n_point_layers name normalization seed spline_bound trainable",
    "ResidualConditioner": f"{LAYER} activation context_dim hidden_units input_dim n_blocks output_dim seed",
    "SplineCoupling": f"{LAYER} context_dim event_dim hidden_units min_bin_size min_slope n_bins n_blocks seed"
    " spline_bound transformed",
    "TriforceCNN": f"{TRIFORCE} dropout ecal_filters ecal_kernel hcal_filters hcal_kernel hidden_units n_classes"
    " n_hidden_layers name seed trainable",
    "TriforceDNN": f"{TRIFORCE} dropout hidden_units n_classes n_hidden_layers name seed trainable",
    "TriforceGoogLeNet": f"{TRIFORCE} dense_units factorized_5x5 n_classes name seed trainable width_multiplier",
}


def _caloml_layers(model: keras.layers.Layer) -> dict[str, keras.layers.Layer]:
    """The first layer of each caloml class in ``model`` (itself included), by class name."""
    found: dict[str, keras.layers.Layer] = {}
    for layer in [model, *model._flatten_layers(include_self=False, recursive=True)]:
        if type(layer).__module__.startswith("caloml.") and type(layer).__name__ in SAVED_KEYS:
            found.setdefault(type(layer).__name__, layer)
    return found


@pytest.fixture(scope="module")
def layers() -> dict[str, keras.layers.Layer]:
    models = [
        GAN3D(seed=3),
        TriforceDNN(n_hidden_layers=1, hidden_units=8, seed=1),
        TriforceCNN(n_hidden_layers=1, hidden_units=8, seed=1),
        TriforceGoogLeNet(seed=1),
        ConditionalFlow(3, 2, flow="maf", n_layers=2, seed=1),
        PointFlowVAE(_normalization(synthetic_showers(16)), seed=3, **TINY),
    ]
    found: dict[str, keras.layers.Layer] = {}
    for model in models:
        found |= _caloml_layers(model)
    return found


def _json(config: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(config))


@pytest.mark.parametrize("class_name", sorted(SAVED_KEYS))
def test_config_keys_and_round_trip(layers: dict[str, keras.layers.Layer], class_name: str) -> None:
    layer = layers[class_name]
    config = _json(layer.get_config())
    assert sorted(config) == sorted(SAVED_KEYS[class_name].split())
    clone = type(layer).from_config(_json(config))
    assert _json(clone.get_config()) | {"name": config["name"]} == config
