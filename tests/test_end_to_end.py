"""The whole pipeline on a tiny generated dataset, as a user and as a notebook cell run it."""

import json
import runpy
import sys
from pathlib import Path

import pytest

import grad_cam_experiment as gce
from conftest import write_image_folder

FIGURES = ["standard_cat_ship.png", "standard_class_grid.png", "stamped_frogs_standard_vs_biased.png",
           "faithfulness.png", "sanity_check.png", "shortcut_verdict.png", "shortcut_audit.png",
           "relocation_frog.png", "relocation_nonfrog.png", "methods_standard.png", "methods_biased_frogs.png",
           "cam_family_biased.png"]


def test_quick_run_writes_every_figure_and_documented_metrics(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--quick", "--data-dir", str(tiny_dataset), "--output-dir", str(out), "--train-subset", "20",
            "--test-subset", "20", "--no-progress"]
    assert gce.main(argv) == 0
    for name in FIGURES:
        assert (out / name).stat().st_size > 10_000, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"config", "environment", "data", "models", "figures", "timings", "shortcut_audit", "faithfulness",
            "sanity_check"} <= metrics.keys()
    assert sorted(Path(f).name for f in metrics["figures"]) == sorted(FIGURES)
    assert metrics["config"]["quick"] and metrics["config"]["train_subset"] == 20 and metrics["seeds"] == [0]
    assert {"torch", "torchvision", "device", "python", "cuda", "cudnn", "cpu_native_bf16"} <= metrics["environment"].keys()
    # The precision actually used, also the first line of the log
    expected = "bf16" if gce.cpu_has_native_bf16() else "fp32"
    assert metrics["precision"]["training"] == metrics["precision"]["forward_only_explanations"] == expected
    assert metrics["precision"]["predictions"] == metrics["precision"]["gradient_explanations"] == "fp32"
    log = capsys.readouterr().out
    assert log.startswith(f"device cpu: training {expected}, ")
    # A console a person can read: no line over 110 characters, a summary of at most 30 lines after the stage lines
    assert max(len(line) for line in log.splitlines()) <= 110
    # a --test-subset too small for the figures' example counts is said (round 15: a smaller figure without a word)
    assert "note: the test set has 4 of the 8 images --examples-per-class asks of the cat/ship figure" in log
    assert "note: the test set has 2 of the 6 images --frog-examples asks of the stamped-frog figure" in log
    summary = log[log.index("\nSummary."):].strip().splitlines()
    assert 10 <= len(summary) <= 30 and summary[-1].startswith("Done in ")
    assert any(line.startswith("Grad-CAM   ") and line.endswith(" n/a") for line in summary)  # the verdict table
    # ... and every full table in summary.md, from metrics.json alone
    tables = (out / "summary.md").read_text()
    assert tables == gce.summary_markdown(metrics)
    for heading in ("## Models", "## Verdicts, nonfrogs", "## Verdicts, frogs", "## Change of point_cell",
                    "## Chance and ceiling", "## Faithfulness", "## Sanity check", "## Timings"):
        assert heading in tables, heading
    assert metrics["data"]["train_images"] == 20 and metrics["data"]["test_images"] == 20
    for name in ("standard", "biased"):
        m = metrics["models"][name]
        assert len(m["history"]) == 1 and {"train_loss", "train_acc", "test_acc", "seconds"} <= m["history"][0].keys()
        assert 0 <= m["test_accuracy"] <= 1 and set(m["per_class_accuracy"]) == set(gce.CIFAR10_CLASSES)
        assert 0 <= m["frog_recall_clean"] <= 1 and 0 <= m["frog_recall_stamped"] <= 1
        assert 0 <= m["shortcut_rate_clean"] <= 1 and 0 <= m["shortcut_rate_stamped"] <= 1
        records = [r for r in metrics["shortcut_audit"]["records"] if r["model"] == name]
        cams = ("Grad-CAM", "Grad-CAM++", "HiResCAM", "LayerCAM", "XGrad-CAM", "Guided Grad-CAM")  # no Score-CAM: quick
        assert list(dict.fromkeys((r["method"], r["layer"]) for r in records)) == [
            ("Guided Backprop", "-"), *((m, layer) for layer in ("layer4.1.conv2", "layer4.1", "layer3") for m in cams),
            ("Occlusion", "-")]
        assert len(records) == (2 + 3 * len(cams)) * 2 * 4 * len(gce.AUDIT_MEASURES)  # groups x corners x measures
        assert all(0 <= r["stamped"] <= 1 and 0 <= r["clean"] <= 1 for r in records)
        assert not m["reused_checkpoint"] and Path(m["checkpoint"]).is_file()
    every = {"Grad-CAM", "Guided Backprop", "Guided Grad-CAM", "Grad-CAM++", "HiResCAM", "LayerCAM", "XGrad-CAM",
             "Score-CAM"}
    assert set(metrics["faithfulness"]["methods"]) == every | {"Random", "Gaussian prior"}
    assert metrics["faithfulness"]["methods"]["Score-CAM"]["images"] == 1  # --quick: one image
    assert set(metrics["sanity_check"]["verdict"]) == every - {"Score-CAM"}  # one image there: left out
    assert {"data_seconds", "train_seconds", "total_seconds"} <= metrics["timings"].keys()
    audit = metrics["shortcut_audit"]
    assert {p["model"] for p in audit["predictions"]} == set(gce.AUDIT_MODELS)
    assert len(audit["verdicts"]) == 2 * (2 + 3 * len(cams))
    assert {v["verdict"] for v in audit["verdicts"]} <= {"reveals", "fails", "unclear", "n/a"}
    per_image = gce.np.load(out / "audit_per_image.npz")
    assert len(per_image["indices/frogs"]) == metrics["shortcut_audit"]["groups"]["frogs"]["images"]
    assert "| standard |     1 |" in log and "| biased   |     1 |" in log

    # A second run reuses both checkpoints (same configuration: the evaluation's sizes are not part of it) and reports
    # the same accuracy; --quiet: one line.
    smaller = ["--methods", "GradCAM", "--audit-layers", "layer4.1.conv2", "--audit-occlusion-images", "0",
               "--faithfulness-images", "2", "--sanity-images", "2", "--audit-images", "2", "--scorecam-images", "0"]
    assert gce.main([*argv, *smaller, "--quiet"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    for name in ("standard", "biased"):
        assert again["models"][name]["reused_checkpoint"]
        assert again["models"][name]["test_accuracy"] == metrics["models"][name]["test_accuracy"]
    quiet = capsys.readouterr().out
    assert quiet.startswith(f"wrote {out}/metrics.json, summary.md and 12 figures in ") and quiet.count("\n") == 1


def test_source_runs_as_a_notebook_cell_with_kernel_argv(tmp_path, monkeypatch, capsys):
    # A notebook cell runs the pasted file with __name__ == "__main__" and the kernel's own argv. The kernel argv
    # must be ignored and the defaults used: the run gets past argument parsing to the data stage, which reads
    # ./data. (./data here holds one corrupt image so that the run stops there, in a second; the whole
    # pipeline is the previous test's job.)
    write_image_folder(tmp_path / "data", {"train": 1, "test": 1})
    (tmp_path / "data" / "test" / "cat" / "0000.png").write_bytes(b"not a png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "/root/.local/share/jupyter/kernel-1.json"])
    with pytest.raises(SystemExit) as exit_info:  # outside a real kernel the script exits with main()'s status
        runpy.run_path(str(Path(gce.__file__)), run_name="__main__")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "unrecognized arguments" not in err
    assert err.strip() == "error: cannot decode image data/test/cat/0000.png; remove or replace the file"


def test_figure_examples_are_correct_ones_first_and_misclassified_only_to_fill_up():
    labels = gce.torch.tensor([3, 3, 3, 8, 3, 8])
    logits = gce.torch.nn.functional.one_hot(gce.torch.tensor([3, 0, 3, 8, 1, 8]), 10).float()  # images 1, 4 wrong
    assert gce.pick_examples(labels, [3], 3, logits).tolist() == [0, 2, 1]
    assert gce.pick_examples(labels, [3], 2, logits).tolist() == [0, 2]  # enough correct ones
    assert gce.pick_examples(labels, [3, 8], 5, logits).tolist() == [0, 2, 1, 4, 3, 5]  # per class, in class order
    assert gce.pick_examples(labels, [8, 3], 1).tolist() == [3, 0]  # without logits: simply the first k
