"""Config loading: preset groups, merge order, overrides and one-line errors (the values' checks themselves:
test_config_schema.py)."""

import subprocess
import sys

import pytest

from experiments.config import REPO_ROOT, available_presets, load_config, run_name
from experiments.config_schema import ConfigError
from tests.conftest import subprocess_env


def test_defaults_are_toy_world_and_full_model():
    cfg = load_config([])
    assert cfg.world == "toy" and cfg.method == "ide" and cfg.ablation is None
    assert cfg.generator.size == 32 and cfg.data.dataset == "toy"
    assert cfg.model.kind == "ide" and cfg.model.input_latent and cfg.model.identity_init == "pretrained"
    # the paper's loss weights (section 3.1)
    assert (cfg.loss.l2, cfg.loss.lpips, cfg.loss.id, cfg.loss.wnorm) == (0.1, 1.0, 0.5, 0.003)


@pytest.mark.parametrize(
    "row,kind,id_enc,latent,init",
    [
        ("baseline", "restyle", False, False, "pretrained"),
        ("ifblock", "ide", True, False, "random"),
        ("input_latent", "ide", True, True, "random"),
        ("pretrained_id", "ide", True, True, "pretrained"),
    ],
)
def test_ablation_presets_map_onto_table2(row, kind, id_enc, latent, init):
    cfg = load_config([f"ablation={row}"])
    assert cfg.ablation == row
    assert (cfg.model.kind, cfg.model.identity_encoder, cfg.model.input_latent) == (kind, id_enc, latent)
    if kind == "ide":
        assert cfg.model.identity_init == init


def test_merge_order_presets_then_overrides():
    cfg = load_config(["world=celebahq", "data.root=/x", "ablation=ifblock", "train.lr=3e-4", "model.n_iters=3"])
    assert cfg.world == "celebahq" and cfg.generator.size == 1024 and cfg.data.lr_size == 32
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.model.n_iters == 3
    assert not cfg.model.input_latent
    # a later override beats a preset named earlier
    assert load_config(["ablation=ifblock", "model.input_latent=true"]).model.input_latent
    assert run_name(cfg) == "ifblock-celebahq-lr-s0"


@pytest.mark.parametrize(
    "recipe,changed",
    [
        ("toy_tables", {"max_steps": 400, "lr_decay": "cosine"}),
        ("toy_long", {"max_steps": 2400, "lr_decay": "cosine", "val_every": 200, "ckpt_every": 200}),
    ],
)
def test_a_toy_recipe_changes_only_the_training_schedule(recipe, changed):
    main_job = load_config(["ablation=pretrained_id"])
    long = load_config(["ablation=pretrained_id", f"recipe={recipe}"])
    assert {k: long.train[k] for k in changed} == changed
    assert all(main_job.train[k] != v for k, v in changed.items())
    for key in changed:
        long.train[key] = main_job.train[key]
    assert long == main_job
    # the same runs as the overrides spelled out (reproduce reuses runs by their config)
    spelled = load_config(["ablation=pretrained_id", *(f"train.{k}={v}" for k, v in changed.items())])
    assert load_config(["ablation=pretrained_id", f"recipe={recipe}"]) == spelled


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train.lrr=1"], "did you mean 'train.lr'"),
        (["train.lr=abc"], "train.lr"),
        (["ablation=inputlatent"], "did you mean 'input_latent'"),
        (["world=mars"], "available: celebahq, toy"),
        (["garbage"], "malformed argument"),
        (["train..lr=1"], "malformed key"),
        (["world=celebahq"], "data.root is required"),
        (["train.max_steps=0"], "'train.max_steps': 0; it must be >= 1"),  # load_config validates what it merged
        (
            ["data.options.train_identites=5"],
            "Key 'train_identites' not in 'ToySizes'. Did you mean one of: 'train_identities'",
        ),
        (["world=celebahq", "data.root=/x", "data.options.train_identities=5"], "its options: none"),
    ],
)
def test_bad_input_is_one_clear_error(argv, needle):
    with pytest.raises(ConfigError) as info:
        load_config(argv)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_key_in_a_preset_file_names_the_file(tmp_path, monkeypatch):
    import experiments.config as config

    (tmp_path / "broken.yaml").write_text("train:\n  max_stepz: 3\n")
    monkeypatch.setattr(config, "ABLATION_DIR", tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(["ablation=broken"])
    assert "broken.yaml" in str(info.value) and "max_steps" in str(info.value)


def test_available_presets_lists_every_row():
    assert {"baseline", "ifblock", "input_latent", "pretrained_id"} <= set(available_presets("ablation"))
    assert {"ide", "restyle", "psp", "pulse"} <= set(available_presets("method"))


def test_every_method_with_nothing_to_train_has_its_preset():
    """PULSE and each trivial answer (models.build.EVAL_ONLY) are run as ``method=<kind>``."""
    from models.build import EVAL_ONLY

    assert set(EVAL_ONLY) <= set(available_presets("method"))
    for kind in EVAL_ONLY:
        cfg = load_config([f"method={kind}"])
        assert (cfg.model.kind, cfg.model.identity_encoder, cfg.model.input_latent) == (kind, False, False)


def test_cli_dry_run_prints_config_and_bad_input_exits_2_without_traceback():
    script = str(REPO_ROOT / "experiments" / "run.py")
    ok = subprocess.run(
        [sys.executable, script, "--dry-run", "ablation=input_latent", "train.lr=3e-4"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "ablation: input_latent" in ok.stdout and "lr: 0.0003" in ok.stdout
    bad = subprocess.run(
        [sys.executable, script, "--dry-run", "train.lrr=1"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def test_a_preset_builds_on_the_presets_it_names(tmp_path, monkeypatch):
    import experiments.config as config

    # the shipped baseline is the restyle method as it is
    baseline, restyle = load_config(["ablation=baseline"]), load_config(["method=restyle"])
    assert baseline.method == "restyle" and baseline.model == restyle.model and baseline.ablation == "baseline"
    (tmp_path / "frozen.yaml").write_text("presets: [ablation=ifblock]\nmodel:\n  identity_freeze: true\n")
    (tmp_path / "ifblock.yaml").write_text("presets: [method=psp]\nmodel:\n  kind: ide\n  input_latent: false\n")
    monkeypatch.setattr(config, "ABLATION_DIR", tmp_path)
    cfg = load_config(["ablation=frozen"])
    # psp first, then ifblock over it, then frozen over both; the last named preset is the ablation
    model = cfg.model
    assert (model.kind, model.n_iters, model.input_latent, model.identity_freeze) == ("ide", 1, False, True)
    assert cfg.method == "psp" and cfg.ablation == "frozen"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("presets: [ablation=loop]\n", "circle: ablation=loop -> ablation=loop"),
        ("presets: [train.lr=1]\n", "not the override 'train.lr=1'"),
        ("presets: method=psp\n", "must be a list"),
    ],
)
def test_bad_preset_lists_are_one_line_errors(tmp_path, monkeypatch, text, needle):
    import experiments.config as config

    (tmp_path / "loop.yaml").write_text(text)
    monkeypatch.setattr(config, "ABLATION_DIR", tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(["ablation=loop"])
    assert needle in str(info.value) and "loop.yaml" in str(info.value) and "\n" not in str(info.value)


def test_dataset_options_reach_the_dataset():
    from experiments.world import build_dataset, dataset_options

    cfg = load_config(["data.options.test_identities=3", "data.options.test_photos_per_identity=2"])
    sizes = dataset_options(cfg.data)
    assert (sizes.test_identities, sizes.test_photos_per_identity, sizes.train_identities) == (3, 2, 2000)
    test = build_dataset(cfg, "test")
    assert test.photos.identity.unique().numel() == 3 and len(test.photos.identity) == 6


def test_a_saved_config_of_an_earlier_version_reads_its_renamed_keys(tmp_path):
    """Run folders exported before ``data.options`` store the toy sizes as ``data.toy_*`` keys."""
    from experiments.config import read_saved_config, to_yaml
    from experiments.config_schema import validate

    text = to_yaml(load_config([])).replace(
        "  options: {}\n", "  toy_test_identities: 7\n  toy_photos_per_identity: 4\n"
    )
    assert "toy_test_identities: 7" in text
    (tmp_path / "config.yaml").write_text(text)
    cfg = read_saved_config(tmp_path / "config.yaml")
    validate(cfg)
    assert dict(cfg.data.options) == {"test_identities": 7, "photos_per_identity": 4}
    assert "toy_test_identities" not in cfg.data


def test_a_saved_config_of_an_earlier_version_drops_its_retired_keys(tmp_path):
    """Run folders of sessions 27-28 saved ``train.random_id_max_steps`` beside the steps it had set; they load
    with the steps they trained (and an unknown key still fails)."""
    from experiments.config import read_saved_config, to_yaml
    from experiments.config_schema import validate

    text = to_yaml(load_config(["train.max_steps=2400"]))
    assert "  max_steps: 2400\n" in text
    (tmp_path / "config.yaml").write_text(
        text.replace("  max_steps: 2400\n", "  max_steps: 2400\n  random_id_max_steps: 2400\n")
    )
    cfg = read_saved_config(tmp_path / "config.yaml")
    validate(cfg)
    assert cfg.train.max_steps == 2400 and "random_id_max_steps" not in cfg.train
    (tmp_path / "config.yaml").write_text(
        text.replace("  max_steps: 2400\n", "  max_steps: 2400\n  other_max_steps: 1\n")
    )
    with pytest.raises(ConfigError, match="other_max_steps"):
        read_saved_config(tmp_path / "config.yaml")
