"""Configuration resolution, strategy mapping and run-directory rules of the shared trainer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import tensorflow as tf
import yaml

from caloml.errors import CalomlError, OutputExistsError
from caloml.train import main as train_main
from caloml.training.config import TaskConfig, config_to_dict, resolve_config, write_config
from caloml.training.run_directory import RunDirectory
from caloml.training.strategy import make_strategy, read_tf_config


@dataclass
class Data:
    energy_range_gev: tuple[float, float] = (2.0, 500.0)
    records: str = ""


@dataclass
class Model:
    weights: dict[str, float] = field(default_factory=lambda: {"real": 3.0})
    synchronized: bool = True


@dataclass
class Config(TaskConfig):
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)


def test_layers_apply_in_order_defaults_preset_yaml_flags_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"epochs": 5, "global_batch_size": 32}, "data": {"records": "y"}}))
    config = resolve_config(
        Config,
        preset={"trainer": {"epochs": 3, "steps_per_epoch": 7}, "data": {"records": "x"}},
        yaml_path=path,
        flags={"trainer.global_batch_size": 16, "trainer.epochs": None},
        assignments=["data.energy_range_gev=[100, 200]", "model.synchronized=false"],
    )
    assert config.trainer.steps_per_epoch == 7  # preset
    assert config.trainer.epochs == 5  # yaml over preset; a None flag is "not given"
    assert config.data.records == "y"
    assert config.trainer.global_batch_size == 16  # flag over yaml
    assert config.data.energy_range_gev == (100.0, 200.0)  # --set, coerced to a float tuple
    assert config.model.synchronized is False  # "false" is the boolean, not a truthy string
    assert config.trainer.init_from == ""  # default


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("trainer.epoch=3", "unknown configuration key 'trainer.epoch'"),
        ("trainer.epochs=three", "'trainer.epochs': expected an integer"),
        ("model.synchronized=False!", "expected true or false"),
        ("data.energy_range_gev=[1, 2, 3]", "expected 2 values"),
        ("trainer=3", "'trainer' is a section"),
        ("epochs", "expected section.key=value"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(assignment, message):
    with pytest.raises(CalomlError, match=message.replace("[", r"\[")):
        resolve_config(Config, assignments=[assignment])


def test_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(CalomlError, match="configuration file not found"):
        resolve_config(Config, yaml_path=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(CalomlError, match=r"bad\.yaml: expected a mapping"):
        resolve_config(Config, yaml_path=bad)


def test_written_config_reads_back_identically(tmp_path):
    config = resolve_config(Config, assignments=["runtime.seed=7"])
    path = write_config(config, tmp_path / "config.yaml")
    again = resolve_config(Config, yaml_path=path)
    assert again == config
    assert yaml.safe_load(path.read_text())["runtime"]["seed"] == 7


def test_run_directory_resumes_same_config_refuses_other_and_moves_aside(tmp_path):
    run = RunDirectory(tmp_path / "run")
    config = config_to_dict(Config())
    assert run.prepare(config) is False  # absent: a fresh run
    write_config(Config(), run.config)
    (run.path / "checkpoints").mkdir()
    assert run.prepare(config_to_dict(resolve_config(Config, assignments=["runtime.seed=5"]))) is False  # no epoch
    (run.path / "checkpoints" / "ckpt-1.index").write_text("")
    assert run.prepare(config) is True
    longer = config_to_dict(resolve_config(Config, assignments=["trainer.epochs=9", "runtime.strategy=mirrored"]))
    assert run.prepare(longer) is True  # more epochs, another strategy: still the same run
    other = config_to_dict(resolve_config(Config, assignments=["trainer.global_batch_size=8"]))
    with pytest.raises(OutputExistsError, match=r"different configuration \(trainer.global_batch_size\)"):
        run.prepare(other)
    assert run.prepare(other, overwrite=True) is False
    moved = tmp_path / "run.replaced-1"
    assert (moved / "config.yaml").exists()
    assert (moved / "checkpoints").is_dir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a caloml run"):
        RunDirectory(foreign).prepare(config)


def test_strategies_map_from_flags(monkeypatch):
    assert make_strategy("default") is tf.distribute.get_strategy()
    assert isinstance(make_strategy("one_device"), tf.distribute.OneDeviceStrategy)
    mirrored = make_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync >= 1
    with pytest.raises(CalomlError, match="unknown strategy 'tpu'"):
        make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(CalomlError, match="needs the TF_CONFIG"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(CalomlError, match="TF_CONFIG is not valid"):
        read_tf_config()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker"}}))
    with pytest.raises(CalomlError, match="TF_CONFIG is not valid"):
        read_tf_config()


def test_dict_valued_fields_take_new_keys_and_are_cleared_by_an_empty_mapping(tmp_path):
    config = resolve_config(Config, assignments=["model.weights.angle=25", "model.weights.real=4"])
    assert config.model.weights == {"real": 4.0, "angle": 25.0}  # a new key merges beside the default one
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"weights": {"energy": 0.1}}}))
    assert resolve_config(Config, yaml_path=path).model.weights == {"real": 3.0, "energy": 0.1}
    cleared = resolve_config(Config, yaml_path=path, assignments=["model.weights={}"])
    assert cleared.model.weights == {}
    assert resolve_config(Config, assignments=["model.weights={}", "model.weights.sum=2"]).model.weights == {"sum": 2.0}
    with pytest.raises(CalomlError, match=r"'model\.weights\.angle': expected a number"):
        resolve_config(Config, assignments=["model.weights.angle=steep"])
    with pytest.raises(CalomlError, match=r"'model\.weights' is a mapping"):
        resolve_config(Config, assignments=["model.weights=3"])
    # sections keep their fixed keys, and an empty mapping does not clear a section
    with pytest.raises(CalomlError, match=r"unknown configuration key 'model\.weight'"):
        resolve_config(Config, assignments=["model.weight.angle=25"])
    assert resolve_config(Config, assignments=["model={}"]) == resolve_config(Config)


def test_a_chief_only_tf_config_is_a_valid_one_machine_cluster(monkeypatch):
    chief = {"cluster": {"chief": ["localhost:2222"]}, "task": {"type": "chief", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(chief))
    assert read_tf_config() == chief
    both = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(both))
    assert read_tf_config() == both
    for bad in (
        {"cluster": {}, "task": {"type": "chief", "index": 0}},  # no machine at all
        {"cluster": {"chief": ["a:1"]}, "task": {"type": "worker", "index": 0}},  # a role the cluster lacks
        {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}},  # an index past the list
    ):
        monkeypatch.setenv("TF_CONFIG", json.dumps(bad))
        with pytest.raises(CalomlError, match="TF_CONFIG is not valid"):
            read_tf_config()


def test_the_command_line_sets_and_clears_keys_of_a_dict_valued_field(capsys):
    assert train_main(["triforce", "--set", "data.simulation_factor.pi0=2", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["simulation_factor"] == {"chpi": 20.0, "pi0": 2.0}
    assert train_main(["triforce", "--set", "data.simulation_factor={}", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["simulation_factor"] == {}
