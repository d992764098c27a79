"""Config and command line: recipe defaults, --quick, notebook argv, and clear errors."""

import pytest

import grad_cam_experiment as gce


def test_defaults_are_the_reference_recipe():
    cfg = gce.parse_config([])
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay) == (5, 128, 0.01, 0.9, 5e-4)
    assert (cfg.lr_step, cfg.lr_gamma, cfg.crop_padding, cfg.flip) == (10, 0.1, 4, True)
    assert (cfg.artifact_class, cfg.artifact_size, cfg.artifact_color, cfg.artifact_corner) == \
        (6, 6, (255, 255, 0), "top-left")
    assert cfg.target_layer == "layer4.1.conv2" and cfg.data_dir == "./data"


def test_flags_override_fields_and_quick_never_beats_an_explicit_flag():
    cfg = gce.parse_config(["--epochs", "3", "--artifact-color", "0,0,255", "--no-flip", "--lr", "0.1"])
    assert (cfg.epochs, cfg.artifact_color, cfg.flip, cfg.lr) == (3, (0, 0, 255), False, 0.1)
    quick = gce.parse_config(["--quick", "--epochs", "2"])
    assert quick.epochs == 2 and quick.train_subset == gce.QUICK_PRESET["train_subset"]
    assert gce.parse_config(["--quick", "--epochs", "5"]).epochs == 5  # explicit, even when equal to the default
    # a pipeline check must not overwrite a real run's committed outputs, unless asked to
    assert quick.output_dir == "outputs/quick" and gce.parse_config([]).output_dir == "outputs"
    assert gce.parse_config(["--quick", "--output-dir", "elsewhere"]).output_dir == "elsewhere"


def test_config_quick_means_the_same_as_the_flag():
    assert gce.Config(quick=True) == gce.parse_config(["--quick"])
    assert gce.Config(quick=True).epochs == 1 and gce.Config(quick=True, epochs=3).epochs == 3
    assert gce.Config().epochs == 5 and gce.Config(quick=True).to_dict()["output_dir"] == "outputs/quick"
    assert gce.QUICK_PRESET["train_subset"] == 200 and "lr" not in gce.QUICK_PRESET  # read off the fields


def test_every_field_has_a_documented_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        gce.parse_config(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in gce.dataclasses.fields(gce.Config):
        assert "--" + field.name.replace("_", "-") in text and field.metadata["help"].split()[0] in text


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "five"], "argument --epochs: invalid int value: 'five'"),
    (["--epoch", "5", "--colour"], "unrecognized arguments: --epoch 5 --colour; did you mean --epochs? (see --help)"),
    (["--artifact-color", "yellow"], "expected R,G,B such as 255,255,0"),
])
def test_bad_flags_exit_with_one_error_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gce.parse_config(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--artifact-size", "0"], "--artifact-size must be 1..32"),
    (["--artifact-corner", "middle"], "--artifact-corner must be one of top-left"),
    (["--artifact-class", "10"], "--artifact-class must be a class index 0..9"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--occlusion-patch", "4", "--occlusion-stride", "8"], "--occlusion-stride must be 1..--occlusion-patch"),
    (["--test-subset", "6"], "--test-subset must be 0 \\(all\\) or >= 10"),
    (["--sanity-images", "600"], "--sanity-images must be 2..--faithfulness-images"),
    # non-finite or out-of-range hyperparameters: these used to train to the end and write NaN metrics
    (["--lr", "inf"], "must be finite numbers"), (["--momentum", "nan"], "must be finite numbers"),
    (["--weight-decay", "inf"], "must be finite numbers"), (["--lr-gamma", "inf"], "must be finite numbers"),
    (["--momentum", "-0.5"], "--momentum must be 0..1"), (["--momentum", "1.5"], "--momentum must be 0..1"),
    (["--weight-decay", "-1"], "--weight-decay >= 0"), (["--lr", "0"], "--lr, --lr-step, --lr-gamma must be > 0"),
    (["--seed", "-1"], "--seed must be 0..4294967295"), (["--seed", str(2 ** 32)], "--seed must be 0..4294967295"),
    (["--output-dir", ""], "must name a folder"), (["--data-dir", " "], "must name a folder"),
    (["--frog-examples", "100000"], "--frog-examples must be 1..100"),
    (["--deletion-steps", "5000"], "--deletion-steps must be 1..1024"),
    (["--pointing-tolerance", "26"], "--pointing-tolerance must be 0..25 with a 6-pixel square"),
    (["--occlusion-patch", "32", "--occlusion-stride", "32"], "the patch < 32"),
])
def test_bad_values_are_user_errors(argv, message):
    with pytest.raises(gce.UserError, match=message):
        gce.parse_config(argv)


def test_notebook_kernel_argv_is_ignored(monkeypatch):
    monkeypatch.setattr(gce.sys, "argv", ["ipykernel_launcher.py", "-f", "/root/.local/share/jupyter/kernel-4f2a.json"])
    assert gce.parse_config() == gce.Config()
    monkeypatch.setattr(gce.sys, "argv", ["colab_kernel_launcher.py", "--f=/tmp/kernel-1.json", "--epochs", "2"])
    assert gce.parse_config().epochs == 2


def test_explicit_argv_is_strict_even_in_a_notebook(monkeypatch, capsys):
    monkeypatch.setattr(gce, "in_notebook", lambda: True)
    with pytest.raises(SystemExit):
        gce.parse_config(["--quick", "--epoch", "3"])  # a typo in main([...]) must not silently run the defaults
    assert "unrecognized arguments: --epoch 3; did you mean --epochs?" in capsys.readouterr().err
    monkeypatch.setattr(gce.sys, "argv", ["ipykernel_launcher.py", "--HistoryManager.enabled=False"])
    assert gce.parse_config() == gce.Config()  # inside a kernel, the kernel's own argv is not ours


def test_only_a_kernel_connection_file_counts_as_kernel_argv():
    assert gce._is_kernel_argv(["-f", "/x/kernel-1.json"]) and gce._is_kernel_argv(["--f=/x/kernel-1.json"])
    assert not gce._is_kernel_argv(["settings.json"]) and not gce._is_kernel_argv(["-f", "/x/kernel-1.json", "-v"])


def test_folders_may_be_paths():
    cfg = gce.Config(data_dir=gce.Path("/data/cifar"), output_dir=gce.Path("out"))  # as a notebook user writes them
    assert str(cfg.data_dir) == "/data/cifar"


def test_config_is_frozen():
    with pytest.raises(gce.dataclasses.FrozenInstanceError):
        gce.Config().epochs = 3


def test_main_prints_one_error_line_for_user_errors(tmp_path, capsys, tiny_dataset):
    assert gce.main(["--data-dir", str(tmp_path / "none"), "--no-download", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no CIFAR-10 found") and "\n" not in err
    assert gce.main(["--data-dir", str(tiny_dataset), "--target-layer", "layer9", "--output-dir",
                     str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown target layer 'layer9'") and "\n" not in err
    for bad in (["--artifact-class", "12"], ["--train-subset", "5"], ["--occlusion-stride", "16"]):
        assert gce.main([*bad, "--data-dir", str(tiny_dataset), "--output-dir", str(tmp_path)]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {bad[0]} must be") and "\n" not in err, err
    assert gce.main(["--epoch", "3"]) == 2  # argparse's own one-line error, as a status
    assert "unrecognized arguments: --epoch 3" in capsys.readouterr().err
    assert gce.main(["--device", "cuda:7"] if not gce.torch.cuda.is_available() else ["--device", "tpu"]) == 2
    assert capsys.readouterr().err.startswith("error: --device")
