"""benchmarks/seeds.py on a tiny generated dataset: the seed list, the spread and the optional fp32 comparison."""

import json
import statistics
import sys
from pathlib import Path

import pytest
import torch

import grad_cam_experiment as gce

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import seeds  # noqa: E402


def run_seeds(data: Path, out: Path, *extra: str) -> int:
    return seeds.main(["--data-dir", str(data), "--seeds", "0,1", "--train-subset", "20", "--test-subset", "20",
                       "--epochs", "1", "--bootstrap-resamples", "20", "--audit-images", "2",
                       "--audit-occlusion-images", "0", "--out", str(out), *extra])


LOW_PRECISION = gce.precision_plan(gce.resolve_device("auto"), True, True)["training"] != "fp32"


def check_spread(report: dict) -> None:
    assert report["seeds"] == [0, 1] and [r["seed"] for r in report["per_seed"]] == [0, 1]
    assert report["config"]["epochs"] == 1 and report["config"]["bootstrap_resamples"] == 20  # the flags reach Config
    for name, s in report["summary"].items():
        values = [r["values"][name] for r in report["per_seed"]]
        assert s["values"] == values and s["mean"] == pytest.approx(statistics.mean(values))
        assert s["sd"] == pytest.approx(statistics.stdev(values))


def test_seed_spread_without_the_fp32_comparison(tiny_dataset, tmp_path, capsys):
    """Any CPU: two models per seed (no fp32 retraining), no comparison reported."""
    assert run_seeds(tiny_dataset, tmp_path, "--no-fp32-comparison") == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    check_spread(report)
    assert report["complete"] and report["seeds_asked"] == [0, 1]
    assert report["precision_accuracy"] is None and "fp32" not in " ".join(report["summary"])
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 4
    assert "and fp32 for the comparison" not in capsys.readouterr().out


@pytest.mark.skipif(not LOW_PRECISION, reason="the study compares bf16/fp16 with fp32: this device trains in fp32")
def test_seed_spread_and_precision_comparison(tiny_dataset, tmp_path, capsys):
    assert run_seeds(tiny_dataset, tmp_path, "--fp32-comparison") == 0
    assert "and fp32 for the comparison" in capsys.readouterr().out
    report = json.loads((tmp_path / "metrics.json").read_text())
    check_spread(report)
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 6
    comparison = report["precision_accuracy"]
    assert comparison["training_precision"] == report["precision"]["training"] != "fp32"
    low = report["summary"]["standard: test_accuracy"]["values"]
    fp32 = report["summary"]["standard: test_accuracy, fp32 training"]["values"]
    assert comparison["amp_minus_fp32"]["values"] == pytest.approx([a - b for a, b in zip(low, fp32)])


def test_comparison_without_a_low_precision_is_one_error_line(tiny_dataset, tmp_path, monkeypatch, capsys):
    plan = dict(gce.precision_plan(torch.device("cpu"), False, False))
    monkeypatch.setattr(gce, "precision_plan", lambda device, amp, forward_amp: plan)  # a CPU without native bf16
    assert run_seeds(tiny_dataset, tmp_path, "--fp32-comparison") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--no-fp32-comparison" in err
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_the_defaults_compare_precisions_only_where_the_device_has_a_low_one(tiny_dataset, tmp_path, monkeypatch):
    """Fault round 17: --fp32-comparison was on by default, so the study's defaults failed on every CPU without bf16."""
    plan = dict(gce.precision_plan(torch.device("cpu"), False, False))
    monkeypatch.setattr(gce, "precision_plan", lambda device, amp, forward_amp: plan)  # a CPU without native bf16
    assert run_seeds(tiny_dataset, tmp_path) == 0  # neither flag given
    assert json.loads((tmp_path / "metrics.json").read_text())["precision_accuracy"] is None


def test_a_seed_study_refuses_an_experiment_runs_folder(tiny_dataset, tmp_path, capsys):
    """Fault round 20: --out holding a finished grad_cam_experiment run was accepted; the study's metrics.json would
    have replaced the run's when the seeds finished."""
    for marker in ("run.json", "metrics.json"):
        out = tmp_path / marker
        out.mkdir()
        (out / marker).write_text(json.dumps(dict(config={}, models={})))
        assert run_seeds(tiny_dataset, out, "--no-fp32-comparison") == 2
        err = capsys.readouterr().err
        assert err == (f"error: --out {out} holds a run of grad_cam_experiment.py (or another metrics.json), which the "
                       "study's metrics.json would replace; pass a folder of its own\n"), err
        assert sorted(p.name for p in out.iterdir()) == [marker]  # nothing trained, nothing replaced


@pytest.mark.parametrize("flags, message", [
    (["--seeds", ","], "--seeds lists no seed (give e.g. --seeds 0,1,2)"),
    (["--seeds", "a"], "--seeds must be comma-separated whole numbers such as 0,1,2, got 'a'"),
    (["--seeds", "0,1,0"], "--seeds lists 0 more than once; give each seed once"),
    (["--seeds", "-1"], "each of --seeds must be 0..4294967295, got -1"),
    (["--seeds", "0", "--train-subset", "25"], "--train-subset must be 0 (all) or a multiple of 10"),
    (["--seeds", "0", "--out", "{file}"], "cannot write to --out {file} ({file} is a file); pass a writable folder"),
    (["--seeds", "0", "--out", " "], "--out must be a folder, got ' '; leave --out out for the default"),  # round 24
])
def test_bad_seed_study_arguments_are_one_error_line_before_any_work(tiny_dataset, tmp_path, capsys, monkeypatch,
                                                                    flags, message):
    """Each is refused with the script's own flag names, before data is loaded or a model trained (they gave
    tracebacks from inside the first seed)."""
    monkeypatch.setattr(gce, "load_cifar10", lambda *a, **k: pytest.fail("data loaded before the arguments were checked"))
    (tmp_path / "file").write_text("")
    flags = [flag.format(file=tmp_path / "file") for flag in flags]
    assert seeds.main(["--data-dir", str(tiny_dataset), "--out", str(tmp_path / "out"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(file=tmp_path / "file")) and err.count("\n") == 1, err


def test_a_seed_study_stopped_by_ctrl_c_says_which_seeds_are_written(tiny_dataset, tmp_path, monkeypatch, capsys):
    real, calls = seeds.one_seed, []

    def second_seed_interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(seeds, "one_seed", second_seed_interrupted)
    assert run_seeds(tiny_dataset, tmp_path, "--no-fp32-comparison") == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted: seed 0 is written in {tmp_path}/seed-N/; the same command reuses the finished "
                   "models' checkpoints"), err
    report = json.loads((tmp_path / "metrics.json").read_text())  # the finished seed's numbers, marked incomplete
    assert (report["seeds"], report["seeds_asked"], report["complete"]) == ([0], [0, 1], False)
    assert report["summary"]["standard: test_accuracy"]["sd"] is None and len(report["per_seed"]) == 1
