"""Recipes: typed validation, dotted overrides, environment variables, helpful errors."""
import pytest
import yaml

from audiocnn.config import ConfigError, config_from_dict, config_to_dict, load_config, save_config


def write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_numbers_like_1e3_are_numbers(tmp_path):
    # YAML 1.1 reads 1e-3 as a string; the recipe still gets a float.
    cfg = load_config(write(tmp_path, "optim:\n  lr: 1e-3\ntrainer:\n  epochs: 2e1\n"))
    assert cfg.optim.lr == pytest.approx(0.001) and isinstance(cfg.optim.lr, float)
    assert cfg.trainer.epochs == 20 and isinstance(cfg.trainer.epochs, int)


def test_name_defaults_to_file_stem(tmp_path):
    assert load_config(write(tmp_path, "{}", "genre.yaml")).name == "genre"


def test_unknown_key_is_named_with_suggestion(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "optim:\n  lrate: 0.1\n"))
    msg = str(e.value)
    assert "r.yaml" in msg and "optim.lrate" in msg and "'lr'" in msg


def test_unknown_section_suggests(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'trainer'"):
        load_config(write(tmp_path, "trainr:\n  epochs: 1\n"))


def test_bad_type_and_choice(tmp_path):
    with pytest.raises(ConfigError, match="trainer.epochs: expected an integer"):
        load_config(write(tmp_path, "trainer:\n  epochs: many\n"))
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        load_config(write(tmp_path, "optim:\n  scheduler: cosin\n"))


def test_dotted_overrides_any_depth(tmp_path):
    p = write(tmp_path, "optim:\n  lr: 0.1\nmodel:\n  name: cnn_tiny\n")
    cfg = load_config(p, ["optim.lr=3e-4", "trainer.epochs=5", "model.args.drop_rate=0.25", "data.test_groups=[13, 14]"])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.trainer.epochs == 5
    assert cfg.model.args == {"drop_rate": 0.25}
    assert cfg.data.test_groups == ["13", "14"]
    with pytest.raises(ConfigError, match="trainer.epoch'.*did you mean 'epochs'"):
        load_config(p, ["trainer.epoch=5"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(p, ["trainer.epochs"])


def test_environment_variables(tmp_path, monkeypatch):
    p = write(tmp_path, "data:\n  root: ${AUDIOCNN_TEST_ROOT:-data}/fsdd\n")
    monkeypatch.delenv("AUDIOCNN_TEST_ROOT", raising=False)
    assert load_config(p).data.root == "data/fsdd"
    monkeypatch.setenv("AUDIOCNN_TEST_ROOT", "/datasets")
    assert load_config(p).data.root == "/datasets/fsdd"
    with pytest.raises(ConfigError, match="AUDIOCNN_UNSET_VAR"):
        load_config(write(tmp_path, "data:\n  root: ${AUDIOCNN_UNSET_VAR}/x\n"))


def test_no_code_in_yaml(tmp_path):
    # The safe loader refuses Python object tags.
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: !!python/object/apply:os.system ['echo pwned']\n"))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, "optim:\n  lr: 1e-3\n"), ["model.args.width=8"])
    save_config(cfg, tmp_path / "out.yaml")
    again = config_from_dict(yaml.safe_load((tmp_path / "out.yaml").read_text()))
    assert config_to_dict(again) == config_to_dict(cfg)


def test_missing_recipe_says_where_recipes_are(tmp_path):
    with pytest.raises(ConfigError, match="recipes/"):
        load_config(tmp_path / "nope.yaml")


def test_every_shipped_recipe_validates(monkeypatch):
    from pathlib import Path
    recipes = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
    assert recipes, "no recipes found"
    for r in recipes:
        cfg = load_config(r)
        assert cfg.name == r.stem
