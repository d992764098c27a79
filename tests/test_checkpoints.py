"""Checkpoints are trusted only when they match: the key comes from the Config's own field marks and the data's
fingerprint, a bad file is retrained with one warning, a save is atomic, and a run stops on what it cannot fix."""

import dataclasses

import pytest
import torch

import grad_cam_experiment as gce
from conftest import write_image_folder

CPU = torch.device("cpu")

# What determines each model's weights (and its saved history, which holds test accuracy), written out here
# independently of the fields' own `trains` marks: a field marked wrongly fails the test below.
# (--amp is keyed through the precision training actually uses: on a CPU without native bf16 it changes nothing.)
TRAINS_BOTH = {"train_subset", "test_subset", "epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_step",
               "lr_gamma", "crop_padding", "flip", "seed", "channels_last", "compile"}
TRAINS_BIASED = TRAINS_BOTH | {"artifact_class", "artifact_size", "artifact_color", "artifact_corner"}
# A valid value different from the default, for every field. A new Config field has none until someone adds it
# here and so decides, in TRAINS_*, whether it affects training.
PERTURBED = dict(
    data_dir="/elsewhere", output_dir="elsewhere", train_subset=100, test_subset=100, download=False,
    artifact_class=3, artifact_size=4, artifact_color=(0, 0, 255), artifact_corner="bottom-right", epochs=4,
    batch_size=64, lr=0.02, momentum=0.5, weight_decay=1e-3, lr_step=3, lr_gamma=0.5, crop_padding=2, flip=False,
    seed=1, retrain=True, resume=False, device="cpu", amp=False, forward_amp=False, channels_last=False, eval_batch_size=64, compile=True,
    target_layer="layer3", examples_per_class=2, frog_examples=3, faithfulness_images=600, occlusion_patch=4,
    occlusion_stride=1, deletion_steps=16, bootstrap_resamples=100, sanity_images=10, audit_layers="layer3",
    audit_images=10, audit_occlusion_images=3, methods="HiResCAM", scorecam_images=3, audit_scorecam_images=2, pointing_tolerance=4, progress=False,
    quiet=True)


def key(cfg: gce.Config, biased: bool, data: str = "fingerprint", precision: str = "fp32", device: str = "cpu") -> str:
    return gce.training_key(cfg.to_dict(), biased, data, precision, device)


@pytest.mark.parametrize("biased", [False, True])
def test_checkpoint_key_changes_exactly_for_the_fields_that_affect_training(biased):
    fields = [f.name for f in dataclasses.fields(gce.Config) if f.name != "quick"]
    assert set(fields) == set(PERTURBED), "give every Config field a perturbed value (and decide if it trains)"
    base = gce.Config()
    changed = {name for name in fields if key(gce.Config(**{name: PERTURBED[name]}), biased) != key(base, biased)}
    assert changed == (TRAINS_BIASED if biased else TRAINS_BOTH)
    # --quick changes the key only through the fields it sets: pinned to their defaults, nothing changes
    pinned = {name: gce.Config.__dataclass_fields__[name].metadata["default"] for name in gce.QUICK_PRESET}
    assert key(gce.Config(quick=True, **pinned), biased) == key(base, biased)
    assert key(gce.Config(quick=True), biased) != key(base, biased)
    # The data are keyed by what was loaded: another fingerprint is another model, whatever the folder is called.
    assert key(base, biased, "other data") != key(base, biased)
    assert key(base, True) != key(base, False)
    # The precision actually used (tests/test_fast_path.py), and the device type: a CPU's fp32 model is not a GPU's.
    assert key(base, biased, precision="bf16") != key(base, biased)
    assert key(base, biased, device="cuda") != key(base, biased)


def test_data_fingerprint_follows_the_loaded_data_not_the_folder_name(tmp_path):
    write_image_folder(tmp_path / "a", {"train": 2, "test": 1})
    cfg = gce.Config(data_dir=str(tmp_path / "a"), download=False)
    first = gce.data_fingerprint(*gce.load_cifar10(cfg, CPU)[:2])
    (tmp_path / "a").rename(tmp_path / "b")  # the same images elsewhere: the same model
    moved = gce.data_fingerprint(*gce.load_cifar10(dataclasses.replace(cfg, data_dir=str(tmp_path / "b")), CPU)[:2])
    assert moved == first
    write_image_folder(tmp_path / "extra", {"train": 3, "test": 1}, seed=7)  # images added to a class folder
    (tmp_path / "extra" / "train" / "cat" / "0002.png").rename(tmp_path / "b" / "train" / "cat" / "0002.png")
    grown = gce.data_fingerprint(*gce.load_cifar10(dataclasses.replace(cfg, data_dir=str(tmp_path / "b")), CPU)[:2])
    assert grown != first


@pytest.fixture
def quick_argv(tiny_dataset, tmp_path):
    return ["--quick", "--data-dir", str(tiny_dataset), "--output-dir", str(tmp_path / "out"), "--train-subset", "20",
            "--test-subset", "20", "--no-progress", "--faithfulness-images", "2", "--sanity-images", "2",
            "--audit-images", "4", "--bootstrap-resamples", "10", "--audit-layers", "layer4.1.conv2"]


@pytest.fixture
def tiny_training(tiny_dataset, tmp_path):
    cfg = gce.Config(data_dir=str(tiny_dataset), output_dir=str(tmp_path), train_subset=20, test_subset=20, epochs=1,
                     progress=False)
    train, test, _ = gce.load_cifar10(cfg, CPU)
    return cfg, train, test, gce.data_fingerprint(train, test)


@pytest.fixture(scope="module")
def trained_once(tiny_dataset, tmp_path_factory):
    """One biased model trained and saved, which each damage below copies into its own output folder."""
    cfg = gce.Config(data_dir=str(tiny_dataset), output_dir=str(tmp_path_factory.mktemp("trained")), train_subset=20,
                     test_subset=20, epochs=1, progress=False)
    train, test, _ = gce.load_cifar10(cfg, CPU)
    fingerprint = gce.data_fingerprint(train, test)
    model, first = gce.train_or_load(cfg, train, test, CPU, True, fingerprint)
    return cfg, train, test, fingerprint, model, gce.Path(first["checkpoint"])


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "other architecture", "stored config differs",
                                    "stored data differ", "non-finite weights", "the standard model's file"])
def test_a_bad_checkpoint_is_retrained_with_one_warning(trained_once, tmp_path, capsys, damage):
    cfg, train, test, fingerprint, model, trained = trained_once
    cfg = dataclasses.replace(cfg, output_dir=str(tmp_path))  # not in the checkpoint key: the same file name
    path = tmp_path / "checkpoints" / trained.name
    path.parent.mkdir()
    data = trained.read_bytes()
    path.write_bytes(data)
    first = dict(checkpoint=str(path))
    if damage == "truncated":  # also what Ctrl-C during a plain torch.save used to leave
        path.write_bytes(data[:len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint" * 100)
    else:
        saved = torch.load(path, weights_only=True)
        if damage == "other architecture":
            saved["state_dict"] = torch.nn.Linear(3, 2).state_dict()
        elif damage == "non-finite weights":  # loads fine, predicts NaN: used to be reused silently
            saved["state_dict"]["fc.weight"][0, 0] = float("nan")
        elif damage == "the standard model's file":  # copied over the biased one's name: the same configuration
            saved["key"] = gce.checkpoint_path(cfg, CPU, False, fingerprint)[1]  # (the fault round: reused silently)
        elif damage == "stored config differs":  # a file renamed or copied under another configuration's key
            saved["config"] = {**saved["config"], "lr": 0.5}
        else:
            saved["data_fingerprint"] = "another dataset"
        torch.save(saved, path)
    capsys.readouterr()
    retrained, again = gce.train_or_load(cfg, train, test, CPU, True, fingerprint)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: ignoring checkpoint {path} (") and err.count("\n") == 1, err
    assert err.endswith("; a run trains the model again and saves it under this name, replacing the file\n") \
        and "weights_only" not in err, err  # round 14; round 17: the file is replaced, said so
    assert not again["reused_checkpoint"] and again["checkpoint"] == first["checkpoint"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), retrained.state_dict().values()))
    saved = torch.load(path, weights_only=True)  # rewritten, with the full configuration inside
    assert saved["config"] == cfg.to_dict() and saved["data_fingerprint"] == fingerprint
    assert gce.train_or_load(cfg, train, test, CPU, True, fingerprint)[1]["reused_checkpoint"]


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    path.write_bytes(b"an older checkpoint")

    def interrupted(obj, f):
        open(f, "wb").write(b"half a chec")
        raise KeyboardInterrupt
    monkeypatch.setattr(gce.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gce.save_atomically({"state_dict": {}}, path)
    assert path.read_bytes() == b"an older checkpoint" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_diverging_run_stops_with_an_error_and_saves_nothing(quick_argv, tmp_path, capsys):
    assert gce.main([*quick_argv, "--lr", "1e12"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: standard model diverged in epoch 1") and "\n" not in err, err
    assert not list((tmp_path / "out" / "checkpoints").glob("*.pt"))


@pytest.mark.parametrize("flags, said", [
    # fault round 12: both were blamed on "--lr (now 0.01) or --momentum (now 0.9)"
    (["--weight-decay", "1e300"], "diverged in epoch 1 (training loss "),
    (["--lr-gamma", "1e300", "--lr-step", "1", "--epochs", "2"], "diverged in epoch 2 (training loss "),
])
def test_the_divergence_line_names_every_setting_that_scales_the_update(quick_argv, capsys, flags, said):
    assert gce.main([*quick_argv, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and "\n" not in err, err
    assert "lower --lr (now 0.01), --momentum (now 0.9) or --weight-decay (now " in err, err
    if "--lr-gamma" in flags:  # the rate that diverged, and where it came from
        assert err.endswith("or --lr-gamma to at most 1; this epoch ran at lr 1e+298, as --lr-gamma 1e+300 every "
                            "--lr-step 1 epochs set it; no checkpoint was written"), err
    else:
        assert "(now 1e+300); no checkpoint was written" in err and "this epoch ran" not in err, err


def test_divergence_advice_on_hand_built_settings():
    cfg = gce.Config(lr=0.1, lr_gamma=0.5)
    assert gce.divergence_advice(cfg, 0.05) == "lower --lr (now 0.1), --momentum (now 0.9) or --weight-decay (now 0.0005)"
    assert gce.divergence_advice(gce.Config(lr=0.1, lr_gamma=3.0), 0.9) == (
        "lower --lr (now 0.1), --momentum (now 0.9) or --weight-decay (now 0.0005), or --lr-gamma to at most 1; this "
        "epoch ran at lr 0.9, as --lr-gamma 3 every --lr-step 10 epochs set it")


def test_ctrl_c_prints_one_line(quick_argv, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(gce, "train_model", interrupted)
    assert gce.main(quick_argv) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted while training the standard model: the same command trains it from epoch 1 "
                          "(no epoch had completed)") and "\n" not in err, err


@pytest.mark.parametrize("layer, message", [
    ("fc", "'fc' outputs (1, 10)"), ("layer4.1.relu", "runs more than once"),
    ("avgpool", "gives a 1x1 feature map for 32x32 images"), ("layer9", "unknown target layer 'layer9'")])
def test_a_bad_layer_is_reported_before_data_or_training(quick_argv, tmp_path, monkeypatch, capsys, layer, message):
    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the layers were checked")
    monkeypatch.setattr(gce, "load_cifar10", no_data)
    for flag in ("--target-layer", "--audit-layers"):
        assert gce.main([*quick_argv, flag, layer]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {flag}: ") and message in err and "\n" not in err, err
    assert gce.main([*quick_argv, "--audit-layers", "layer4.1,layer4[-1]"]) == 2  # one layer, two names
    assert "--audit-layers lists layer layer4.1 2 times (layer4.1, layer4[-1]); give each once" in (
        capsys.readouterr().err)
    assert not (tmp_path / "out").exists()  # an early error leaves no empty output folder behind


def test_an_output_dir_that_cannot_be_written_or_is_inside_the_data_is_one_line(quick_argv, tiny_dataset, tmp_path,
                                                                                 capsys):
    (tmp_path / "a-file").write_text("user data")
    (tmp_path / "out-with-file" / "checkpoints").parent.mkdir()
    (tmp_path / "out-with-file" / "checkpoints").write_text("not a folder")  # found before training, not after
    for out, problem in [(tmp_path / "a-file", "a-file is a file"), (tmp_path / "a-file" / "below", "a-file is a file"),
                         (tmp_path / "out-with-file", "checkpoints is a file"),
                         *([(gce.Path("/proc/no-such-dir"), "cannot write")] if gce.Path("/proc/self").exists() else []),
                         (tiny_dataset / "train" / "outputs", "is inside the data"),
                         (tiny_dataset, "is the data folder --data-dir itself")]:  # fault round 16: accepted
        assert gce.main([*quick_argv, "--output-dir", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and problem in err and "\n" not in err, err
    assert (tmp_path / "a-file").read_text() == "user data" and not (tiny_dataset / "train" / "outputs").exists()
    assert not (tiny_dataset / "checkpoints").exists() and not (tiny_dataset / "run.json").exists()


def test_an_output_dir_whose_checkpoints_folder_alone_is_read_only_names_that_folder(quick_argv, tmp_path, monkeypatch,
                                                                                     capsys):
    """Fault round 4: a writable output folder whose checkpoints/ was read-only was reported as the output folder
    refusing (simulated: root, who runs CI, may write anywhere)."""
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    real_write = gce.Path.write_bytes

    def refused(self, data):
        if self.parent == out / "checkpoints":
            raise PermissionError(13, "Permission denied", str(self))
        return real_write(self, data)
    monkeypatch.setattr(gce.Path, "write_bytes", refused)
    assert gce.main([*quick_argv, "--output-dir", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: cannot write to --output-dir {out}: {out / 'checkpoints'} refused "
                                               f"(Permission denied); pass a writable folder or make "
                                               f"{out / 'checkpoints'} writable")
    assert sorted(p.name for p in out.rglob("*")) == ["checkpoints"]  # the probe left nothing


def test_an_interrupted_training_resumes_to_the_same_weights(tiny_training, monkeypatch, capsys):
    cfg, train, test, fingerprint = tiny_training
    cfg = dataclasses.replace(cfg, epochs=3, lr_step=1)  # one step per epoch; the rate decays every epoch
    whole, first = gce.train_or_load(cfg, train, test, CPU, True, fingerprint)
    path = gce.Path(first["checkpoint"])
    epoch_path = path.with_suffix(".epoch.pt")
    assert path.exists() and not epoch_path.exists()  # the epoch state goes once the model is saved
    path.unlink()
    real_step, calls = gce.training_step, []

    def interrupted_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)
    monkeypatch.setattr(gce, "training_step", interrupted_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        gce.train_or_load(cfg, train, test, CPU, True, fingerprint)
    assert not path.exists() and len(torch.load(epoch_path, weights_only=True)["history"]) == 2
    monkeypatch.setattr(gce, "training_step", real_step)
    capsys.readouterr()
    resumed, info = gce.train_or_load(cfg, train, test, CPU, True, fingerprint)
    assert f"resuming after epoch 2 of 3 from {epoch_path}" in " ".join(capsys.readouterr().out.split())  # wrapped
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    drop = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]  # noqa: E731
    assert drop(info["history"]) == drop(first["history"]) and not epoch_path.exists()
    # A state saved under another key is not continued (one warning, then epoch 1), nor with --no-resume or --retrain
    for damage in ("other key", "no resume", "retrain"):
        path.unlink()
        key_in_name = path.stem.removeprefix("biased-")
        gce.train_model(dataclasses.replace(cfg, epochs=1), train, test, CPU, True, "biased", epoch_path,
                        "other" if damage == "other key" else key_in_name)  # leaves a 1-epoch state behind
        no_resume = dataclasses.replace(cfg, resume=damage != "no resume", retrain=damage == "retrain")
        again, info = gce.train_or_load(no_resume, train, test, CPU, True, fingerprint)
        captured = capsys.readouterr()
        assert "resuming" not in captured.out and len(info["history"]) == 3
        assert (captured.err.startswith("warning: ignoring training state")) == (damage == "other key")
        assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), again.state_dict().values()))


def test_a_link_loop_or_a_folder_in_a_results_place_is_one_line_before_any_work(quick_argv, tiny_dataset, tmp_path,
                                                                                monkeypatch, capsys):
    """Fault round: a symbolic link loop in --data-dir or --output-dir was a traceback (Path.resolve); a folder named
    metrics.json in the output folder was found only after the whole evaluation."""
    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the output folder was checked")
    monkeypatch.setattr(gce, "load_cifar10", no_data)
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for flag, value, message in [("--data-dir", tmp_path / "a", f"--data-dir {tmp_path / 'a'} cannot be resolved"),
                                 ("--output-dir", tmp_path / "a" / "out", f"--output-dir {tmp_path / 'a' / 'out'} "
                                                                          "cannot be resolved")]:
        assert gce.main([*quick_argv, flag, str(value)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {message}") and "symbolic link" in err and "\n" not in err, err
    out = tmp_path / "kept"
    (out / "metrics.json").mkdir(parents=True)
    (out / "metrics.json" / "inside.txt").write_text("user data")
    assert gce.main([*quick_argv, "--output-dir", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --output-dir {out} holds folder(s) named like the files a run "
                                               "writes (metrics.json); move or rename them, or pass another "
                                               "--output-dir")
    assert (out / "metrics.json" / "inside.txt").read_text() == "user data"
    (out / "metrics.json" / "inside.txt").unlink()
    (out / "metrics.json").rmdir()
    (out / ".lock").mkdir()  # fault round 12: "Is a directory (.../.lock)" after loading the data
    assert gce.main([*quick_argv, "--output-dir", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --output-dir {out} holds folder(s) named like the files a run "
                                               "writes (.lock); move or rename them, or pass another --output-dir")
