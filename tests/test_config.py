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


def test_help_says_which_flags_retrain(capsys):
    """Round 16-20 borderline: --channels-last or a larger --epochs trained anew from epoch 1 without --help saying why.
    Each flag's help names the model it retrains exactly when the checkpoint key hashes it."""
    with pytest.raises(SystemExit):
        gce.parse_config(["--help"])
    text = capsys.readouterr().out
    entries = {}  # flag name -> its help, joined across argparse's wrapped lines
    for line in text[text.index("options:"):text.index("'retrains':")].splitlines():
        if line.startswith("  -"):  # an entry's first line: '  --flag ARG  help' or '  -h, --help ...'
            name = line.split()[0].rstrip(",").lstrip("-").replace("-", "_")
        elif not line.startswith("  "):
            continue
        entries[name] = entries.get(name, "") + " " + " ".join(line.split())
    both, biased = set(gce.training_fields(False)), set(gce.training_fields(True)) - set(gce.training_fields(False))
    assert {"epochs", "channels_last", "train_subset"} <= both and "artifact_class" in biased
    for field in gce.dataclasses.fields(gce.Config):
        entry = entries[field.name]
        assert ("retrains both models" in entry) == (field.name in both), entry
        assert ("retrains the biased model" in entry) == (field.name in biased), entry
    text = " ".join(text.split())
    assert "'retrains': the flag is part of the checkpoint's key" in text


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "five"], "argument --epochs: invalid int value: 'five'"),
    (["--epoch", "5", "--colour"], "unrecognized arguments: --epoch 5 --colour; did you mean --epochs? (see --help)"),
    (["--artifact-color", "yellow"], "expected R,G,B such as 255,255,0"),
    (["--ep", "2"], "unrecognized arguments: --ep 2; did you mean --epochs? (see --help)"),  # it suggested --help
    (["--eval", "2"], "unrecognized arguments: --eval 2; did you mean --eval-batch-size? (see --help)"),
    (["--quick --epochs 0"], "unrecognized arguments: --quick --epochs 0; '--quick --epochs 0' is one item holding "
                             "several words: give each flag and value as its own item (shlex.split) (see --help)"),
    # round 15's borderline: a float too small to represent was read as 0.0 and the message said 'got 0.0'
    (["--lr", "1e-400"], "argument --lr: '1e-400' is too small for a float (it would be read as 0.0)"),
    (["--weight-decay", "-1e-999"], "argument --weight-decay: '-1e-999' is too small for a float"),
    (["--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
])
def test_bad_flags_exit_with_one_error_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gce.parse_config(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def _outside(valid):
    """Values just outside a numeric Valid, each with the text the message must repeat."""
    if valid.low is not None:
        below = valid.low if valid.above else valid.low - 1
        yield -1 if below == 0 and valid.zero else below  # 0 is valid where it means "all" or "none"
    if valid.high is not None:
        yield valid.high + 1
    if valid.step > 1:
        yield valid.low + valid.step // 2


RANGED = [(f, value) for f in gce.dataclasses.fields(gce.Config) if f.metadata["valid"] is not None
          and not (f.metadata["valid"].choices or f.metadata["valid"].nonempty)
          for value in _outside(f.metadata["valid"])]


@pytest.mark.parametrize("field, value", RANGED, ids=[f"{f.name}={v}" for f, v in RANGED])
def test_every_range_message_names_its_flag_its_range_and_the_value(field, value):
    """One validator for every declared range: the message names this flag only, what it accepts, the value given."""
    flag = "--" + field.name.replace("_", "-")
    text = ",".join([str(value)] * 3) if field.type == "tuple" else str(value)
    with pytest.raises(gce.UserError) as error:
        gce.parse_config([flag, text])
    message = str(error.value)
    assert message.startswith(f"{flag} must be ") and f", got {text}" in message, message
    assert str(field.metadata["valid"]) in message and message.count("--") == 1, message


@pytest.mark.parametrize("argv, message", [
    # the messages issue 23 found blaming the wrong flag, or several at once
    (["--audit-images", "0"], "--audit-images must be 2..1000000 images, got 0"),
    (["--faithfulness-images", "0"], "--faithfulness-images must be 2..1000000 images, got 0"),
    (["--sanity-images", "0"], "--sanity-images must be 2..1000000 images, got 0"),
    (["--bootstrap-resamples", "0"], "--bootstrap-resamples must be 10..100000, got 0"),
    (["--occlusion-patch", "33"], "--occlusion-patch must be 1..31 pixels, got 33"),
    (["--lr-step", "0"], "--lr-step must be 1..1000000, got 0"),
    (["--artifact-color", "-1,0,0"], "--artifact-color must be R,G,B with each 0..255, got -1,0,0"),
    (["--artifact-color", "300,0,0"], "--artifact-color must be R,G,B with each 0..255, got 300,0,0"),
    (["--lr", "-1e-3"], "--lr must be > 0, got -0.001"),  # a negative that argparse alone reads as a flag
    (["--artifact-corner", "middle"], "--artifact-corner must be one of top-left, top-right, bottom-left, "
                                      "bottom-right, got 'middle'"),
    (["--artifact-class", "10"], "--artifact-class must be 0..9, got 10"),
    (["--train-subset", "205"], "--train-subset must be 0 (all) or a multiple of 10, 10..1000000 images, got 205; "
                                "e.g. 200 or 210"),
    (["--test-subset", "6"], "--test-subset must be 0 (all) or a multiple of 10, 10..1000000 images, got 6"),
    # non-finite hyperparameters: these used to train to the end and write NaN metrics
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--momentum", "nan"], "--momentum must be a finite number 0..1, got nan"),
    (["--weight-decay", "inf"], "--weight-decay must be a finite number >= 0, got inf"),
    (["--lr-gamma", "-inf"], "--lr-gamma must be a finite number > 0, got -inf"),
    (["--output-dir", ""], "--output-dir must be a non-empty name, got ''"),
    (["--data-dir", " "], "--data-dir must be a non-empty name, got ' '"),
    (["--audit-layers", ","], "--audit-layers needs at least one layer name, got ','"),
    # fault round 12: no ceiling let a batch size reach torch's split as an overflow traceback after the first epoch
    (["--eval-batch-size", "99999999999999999999"], "--eval-batch-size must be 1..1000000 images, got "
                                                    "99999999999999999999"),
    (["--batch-size", "1000001"], "--batch-size must be 2..1000000 images, got 1000001"),
    # fault round 13: the subsets had no ceiling, and 99999999999999999990 was a traceback from balanced_subset
    (["--train-subset", "99999999999999999990"], "--train-subset must be 0 (all) or a multiple of 10, 10..1000000 "
                                                 "images, got 99999999999999999990"),
    # relations name both fields, and only when the relation is what is broken
    (["--occlusion-patch", "4", "--occlusion-stride", "8"],
     "--occlusion-stride (8) must be at most --occlusion-patch (4), else some pixels are never occluded"),
    (["--sanity-images", "600"], "--sanity-images (600) must be at most --faithfulness-images (500, its default)"),
    (["--quick", "--faithfulness-images", "3"], "--sanity-images (4, --quick's value) must be at most "
                                                "--faithfulness-images (3)"),  # round 14: '(4)' looked like a typo
    (["--pointing-tolerance", "26"], "--pointing-tolerance must be 0..25 pixels with --artifact-size 6, got 26; lower "
                                     "it or --artifact-size"),
    (["--artifact-size", "24"], "--pointing-tolerance must be 0..7 pixels with --artifact-size 24, got 8 (its "
                                "default); lower it or --artifact-size"),  # fault round 6: the default was not said
    (["--methods", "ScoreCAM", "--scorecam-images", "0", "--audit-scorecam-images", "0"],
     "--methods names ScoreCAM, but --scorecam-images and --audit-scorecam-images are 0 (none)"),  # ran no Score-CAM
])
def test_bad_values_are_user_errors(argv, message):
    with pytest.raises(gce.UserError) as error:
        gce.parse_config(argv)
    assert str(error.value).startswith(message), str(error.value)


def test_a_value_out_of_its_own_range_is_named_before_any_relation():
    with pytest.raises(gce.UserError, match=r"^--occlusion-stride must be 1\.\.31 pixels, got 40$"):
        gce.parse_config(["--occlusion-patch", "4", "--occlusion-stride", "40"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=2.5), "--epochs must be a whole number, 1..1000000, got 2.5 (float)"),
    (dict(lr="0.1"), "--lr must be a number, > 0, got '0.1' (str)"),
    (dict(quick="yes"), "--quick must be True or False, got 'yes' (str)"),
    (dict(artifact_color=(255, 0)), "--artifact-color must be R,G,B (three whole numbers), 0..255, got 255,0 (tuple)"),
    (dict(seed=True), "--seed must be a whole number"),
    (dict(methods=("GradCAM",)), "--methods must be text such as 'all', a non-empty name, got ('GradCAM',) (tuple)"),
    (dict(output_dir=3), "--output-dir must be text or a path"),  # round 24: 'or a path' was said of --methods too
])
def test_python_api_gets_the_same_messages_for_wrong_types(kwargs, message):
    with pytest.raises(gce.UserError) as error:
        gce.Config(**kwargs)
    assert str(error.value).startswith(message), str(error.value)


def test_python_values_are_stored_as_the_command_line_gives_them():
    """numpy scalars, a list colour and an int learning rate give the config (and checkpoint key) of the flags."""
    cfg = gce.Config(epochs=gce.np.int64(3), lr=1, artifact_color=[255, 255, 0])
    assert cfg == gce.parse_config(["--epochs", "3", "--lr", "1", "--artifact-color", "255,255,0"])
    assert type(cfg.epochs) is int and type(cfg.lr) is float and cfg.artifact_color == (255, 255, 0)
    assert gce.Config(artifact_color="255,0,0").artifact_color == (255, 0, 0)  # the flag's own form (it was refused)
    # a path object is text for every text field, and ~ is the home folder in both folders (it made a folder named ~)
    cfg = gce.Config(output_dir="~/q", data_dir=gce.Path("~/d"), methods=gce.Path("GradCAM"),
                     target_layer=gce.Path("layer3"))
    assert (cfg.output_dir, cfg.data_dir) == (gce.os.path.expanduser("~/q"), gce.os.path.expanduser("~/d"))
    assert (cfg.methods, cfg.target_layer) == ("GradCAM", "layer3")


def test_the_console_summary_reads_the_audit_layers_as_the_run_does():
    """--audit-layers ',layer4.1.conv2' ran layer4.1.conv2; the summary showed a layer named '' and no Grad-CAM row."""
    metrics = gce.json.loads((gce.Path(gce.__file__).parent / "outputs/run-10k-seed1/metrics.json").read_text())
    metrics["config"]["audit_layers"] = " ,layer4.1.conv2,layer4.1,layer3"
    lines = gce.console_summary(metrics)
    assert any(line.startswith("Shortcut audit at layer4.1.conv2, stamped") for line in lines)
    assert any(line.startswith("Grad-CAM ") for line in lines)


def test_help_shows_each_declared_range():
    text = gce.build_arg_parser().format_help().replace("\n", " ")
    assert "valid: 1..31 pixels" in " ".join(text.split())


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


@pytest.mark.parametrize("argv, message", [
    (5, "main() takes a list of flags such as ['--quick', '--epochs', '2'], got int"),
    ("--quick", "main() takes a list of flags such as ['--quick', '--epochs', '2'], got the string '--quick'; split it "
                "into a list (shlex.split)"),
    (["--epochs", None], "main()'s flags must be text such as '--epochs' or '2', got NoneType None"),
    ({"--quick": 1}, "main() takes a list of flags such as ['--quick', '--epochs', '2'], got dict"),
    (["--quick", True], "main()'s flags must be text such as '--epochs' or '2', got bool True"),
])
def test_main_with_argv_that_is_not_a_list_of_text_is_one_error_line(argv, message, capsys):
    assert gce.main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_main_takes_numbers_and_paths_in_its_list_as_the_command_line_gives_them(monkeypatch):
    """main(["--epochs", 2, "--data-dir", Path(...)]) as a notebook user writes it; an empty sys.argv (exec in a plain
    Python session) still names the program."""
    cfg = gce.parse_config(["--epochs", 2, "--lr", 0.05, "--data-dir", gce.Path("/data/cifar"), "--test-subset",
                            gce.np.int64(20)])
    assert (cfg.epochs, cfg.lr, cfg.data_dir, cfg.test_subset) == (2, 0.05, "/data/cifar", 20)
    monkeypatch.setattr(gce.sys, "argv", ["x", "--data-dir", gce.Path("/data/cifar"), "--epochs", 3])  # set by hand
    assert (gce.parse_config().data_dir, gce.parse_config().epochs) == ("/data/cifar", 3)
    assert gce.build_arg_parser().prog == "grad_cam_experiment.py"


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
    assert err.startswith("error: --target-layer: unknown target layer 'layer9'") and "\n" not in err
    for bad in (["--artifact-class", "12"], ["--train-subset", "5"], ["--occlusion-stride", "40"]):
        assert gce.main([*bad, "--data-dir", str(tiny_dataset), "--output-dir", str(tmp_path)]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {bad[0]} must be") and "\n" not in err, err
    assert gce.main(["--epoch", "3"]) == 2  # argparse's own one-line error, as a status
    assert "unrecognized arguments: --epoch 3" in capsys.readouterr().err
    assert gce.main(["--device", "cuda:7"] if not gce.torch.cuda.is_available() else ["--device", "tpu"]) == 2
    assert capsys.readouterr().err.startswith("error: --device")


@pytest.mark.parametrize("flag", ["--output-dir", "--data-dir", "--target-layer"])
def test_a_control_character_in_a_text_flag_is_refused(flag):
    """Fault round 4: --output-dir $'/tmp/nl\\n' made a folder whose name ends in a newline, shown as 'nl /run.json'."""
    with pytest.raises(gce.UserError) as error:
        gce.parse_config([flag, "/tmp/out\n"])
    assert str(error.value) == (f"{flag} must not hold control characters (a newline or tab, often pasted with a path), "
                                "got '/tmp/out\\n'")


def test_resolve_device_takes_a_torch_device_as_its_name():
    """Fault round 16: resolve_device(torch.device('cpu')) was refused as not text; a missing GPU still says so."""
    assert gce.resolve_device(gce.torch.device("cpu")) == gce.torch.device("cpu")
    if not gce.torch.cuda.is_available():
        with pytest.raises(gce.UserError, match="asked for a GPU but PyTorch sees no CUDA device"):
            gce.resolve_device(gce.torch.device("cuda"))
