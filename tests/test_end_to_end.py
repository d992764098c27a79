"""The whole pipeline on a tiny generated dataset, as a user and as a notebook cell run it."""

import json
import os
import runpy
import sys
from pathlib import Path

import grad_cam_experiment as gce

FIGURES = ["standard_cat_ship.png", "standard_class_grid.png", "stamped_frogs_standard_vs_biased.png"]


def test_quick_run_writes_every_figure_and_documented_metrics(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--quick", "--data-dir", str(tiny_dataset), "--output-dir", str(out), "--train-subset", "20",
            "--test-subset", "20", "--no-progress"]
    assert gce.main(argv) == 0
    for name in FIGURES:
        assert (out / name).stat().st_size > 10_000, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"config", "environment", "data", "models", "figures", "timings"} <= metrics.keys()
    assert metrics["config"]["quick"] and metrics["config"]["train_subset"] == 20
    assert {"torch", "torchvision", "device", "python"} <= metrics["environment"].keys()
    assert metrics["data"]["train_images"] == 20 and metrics["data"]["test_images"] == 20
    for name in ("standard", "biased"):
        m = metrics["models"][name]
        assert len(m["history"]) == 1 and {"train_loss", "train_acc", "test_acc", "seconds"} <= m["history"][0].keys()
        assert 0 <= m["test_accuracy"] <= 1 and set(m["per_class_accuracy"]) == set(gce.CIFAR10_CLASSES)
        assert 0 <= m["frog_recall_clean"] <= 1 and 0 <= m["frog_recall_stamped"] <= 1
        assert not m["reused_checkpoint"] and Path(m["checkpoint"]).is_file()
    assert {"data_seconds", "train_seconds", "total_seconds"} <= metrics["timings"].keys()
    log = capsys.readouterr().out
    assert "| standard |     1 |" in log and "| biased   |     1 |" in log

    # A second run reuses both checkpoints (same configuration) and reports the same accuracy.
    assert gce.main(argv) == 0
    again = json.loads((out / "metrics.json").read_text())
    for name in ("standard", "biased"):
        assert again["models"][name]["reused_checkpoint"]
        assert again["models"][name]["test_accuracy"] == metrics["models"][name]["test_accuracy"]
    assert "reusing checkpoint" in capsys.readouterr().out


def test_source_runs_as_a_notebook_cell_with_kernel_argv(tiny_dataset, tmp_path, monkeypatch, capsys):
    # A notebook cell runs the pasted file with __name__ == "__main__" and the kernel's own argv; the
    # defaults then read ./data (here: the tiny dataset) and write ./outputs.
    (tmp_path / "data").symlink_to(tiny_dataset, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "/root/.local/share/jupyter/kernel-1.json"])
    monkeypatch.setenv("TQDM_DISABLE", "1")
    try:
        runpy.run_path(str(Path(gce.__file__)), run_name="__main__")
    except SystemExit as exc:
        assert exc.code == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "error" not in captured.err
    assert (tmp_path / "outputs" / "metrics.json").is_file()
    assert all((tmp_path / "outputs" / name).is_file() for name in FIGURES)
