"""The fast path changes speed, not results: same maps and losses as the plain path; the benchmark runs."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import grad_cam_experiment as gce

ROOT = Path(__file__).resolve().parents[1]


def test_channels_last_and_plain_layout_give_the_same_grad_cam(model, images):
    plain = gce.GradCAM(model, "layer4.1.conv2")(images, 3)
    fast_model = model.to(memory_format=torch.channels_last)
    fast = gce.GradCAM(fast_model, "layer4.1.conv2")(images.contiguous(memory_format=torch.channels_last), 3)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-4)


@pytest.mark.parametrize("native", [True, False])
def test_cpu_autocasts_to_bf16_only_where_it_has_native_bf16(monkeypatch, native):
    monkeypatch.setattr(gce, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16), gce.autocast_for(cpu, False):  # off, also in a caller's autocast
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    with gce.autocast_for(cpu, True):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == (torch.bfloat16 if native else torch.float32)
    assert gce.training_precision(cpu, True) == ("bf16" if native else "fp32")
    assert gce.training_precision(cpu, False) == "fp32"
    plan = gce.precision_plan(cpu, True, False)
    assert plan["training"] == gce.training_precision(cpu, True) and plan["forward_only_explanations"] == "fp32"
    assert plan["gradient_explanations"] == plan["predictions"] == "fp32"
    assert ("without native bf16" in plan["reason"]) != native


def test_the_probe_answers_without_crashing():
    assert isinstance(gce.cpu_has_native_bf16(), bool)


def test_fp32_means_fp32_on_a_gpu():
    """cuDNN's TF32 default would make the "fp32" explanations TF32 on Ampere and later; run() turns it off there
    (setting the flags needs no GPU). Saved and restored by hand: on torch 2.14 `matmul.allow_tf32` is a property that
    monkeypatch cannot restore (it tries to delete it)."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = True
        gce.fp32_without_tf32(torch.device("cpu"))
        assert cudnn.allow_tf32 and matmul.allow_tf32  # CPU: nothing to change
        gce.fp32_without_tf32(torch.device("cuda"))
        assert not cudnn.allow_tf32 and not matmul.allow_tf32
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def test_fast_training_batch_equals_the_plain_one():
    cfg = gce.Config()
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(16) % 10
    artifact = (cfg.artifact_class, cfg.square)
    fast = gce.training_batch(images, labels, torch.Generator().manual_seed(0), 4, True, True, artifact)
    plain = gce.training_batch(images, labels, torch.Generator().manual_seed(0), 4, True, False, artifact)
    assert fast.is_contiguous(memory_format=torch.channels_last) and plain.is_contiguous()
    assert torch.equal(fast, plain)
    torch.manual_seed(0)
    model = gce.build_model()
    loss_plain = F.cross_entropy(model(plain), labels)
    loss_fast = F.cross_entropy(model.to(memory_format=torch.channels_last)(fast), labels)
    torch.testing.assert_close(loss_fast, loss_plain, rtol=1e-5, atol=1e-5)


def test_benchmark_smoke_mode_runs_and_reports(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    training = report["training"]["8"]
    assert training["project"]["images_per_s_best"] > 0 and training["naive"]["images_per_s_best"] > 0
    explanations = report["explanations"]
    assert {"forward_inference_floor", "project_gradcam", "pytorch_grad_cam", "project_vs_floor"} <= explanations.keys()
    assert re.search(r"\| Grad-CAM, batch 8 \(baseline: pytorch-grad-cam\) +\| +[\d.]+ \| +[\d.]+ \| +[\d.]+x \|",
                     done.stdout), done.stdout


@pytest.mark.parametrize("flags, message", [
    (["--repeats", "0"], "error: --repeats must be >= 1, got 0"),  # a traceback after minutes of timing before
    (["--repeats", "x"], "error: argument --repeats: invalid int value: 'x' (see --help)"),
    (["--accuracy", "--data-dir", "{tmp}"], "error: --data-dir {tmp} has no train/ and test/ folders"),
    (["--out", "{tmp}"], "error: cannot write --out {tmp} ({tmp} is a folder); pass a JSON file path"),  # not after
    (["--cam-family", "--accuracy"], "error: --cam-family times only that and would ignore --accuracy; run them "
                                     "separately"),  # --accuracy was dropped without a word
    (["--quick-only", "--full-run", "--data-dir", "{tmp}"], "error: --quick-only times only that and would ignore "
                                                            "--full-run"),
    (["--smoke", "--full-run"], "error: --full-run times the default run on a GPU and not with --smoke; this is "
                                "--smoke"),  # fault round 11: exit 0 with no full run, and no word
    (["--full-run", "--data-dir", "{tmp}"], "error: --full-run times the default run on a GPU"),  # on this CPU
    (["--smoke", "--data-dir", "{tmp}"], "error: --smoke skips the wall-time runs --data-dir is for"),
    (["--smoke", "--repeats", "5", "--slow-images", "4"], "error: --smoke uses its own tiny sizes and would ignore "
                                                          "--repeats, --slow-images"),  # fault round 12: rc 0
    (["--smoke", "--repeats", "3", "--steps=2"], "error: --smoke uses its own tiny sizes and would ignore "
                                                 "--repeats, --steps"),  # round 14: their defaults, rc 0, 1 repeat
    (["--smoke", "--cam-family", "--scorecam-images", "3"], "error: --smoke uses its own tiny sizes and would ignore "
                                                            "--scorecam-images"),  # round 15: rc 0, 1 image
    (["--out", ""], "error: --out must be a JSON file path, got ''; leave --out out for the default"),  # round 13: the
    (["--smoke", "--out", "{ref}"], "error: --out {ref} is an output of a grad_cam_experiment.py run, which the "
                                    "benchmark's JSON would replace"),  # round 21: replaced, rc 0
    (["--smoke", "--out", "{tmp}/checkpoints/standard-0123456789.pt"], "error: --out {tmp}/checkpoints/standard-"
     "0123456789.pt is an output of a grad_cam_experiment.py run"),  # round 23: a run's checkpoint, replaced
])                                                                        # default, the committed file, was written                                                                                               # minutes of timing
def test_bad_benchmark_flags_are_one_line_before_any_timing(tmp_path, flags, message):
    reference = ROOT / "outputs" / "run-10k-seed1" / "metrics.json"
    before = reference.read_bytes()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "standard-0123456789.pt").write_bytes(b"a model")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"),
                           *(f.format(tmp=tmp_path, ref=reference) for f in flags)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stderr.startswith(message.format(tmp=tmp_path, ref=reference)), done.stderr
    assert reference.read_bytes() == before
    assert done.stderr.count("\n") == 1 and not done.stdout


def test_a_smoke_run_never_replaces_the_committed_numbers():
    """bench.py --smoke as the README gives it (no --out) wrote outputs/benchmarks/bench-cpu.json, which the README's
    speed numbers cite: the markers test failed after it."""
    import argparse
    import tempfile
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench
    for name in ("bench-cpu.json", "cam-family-cpu.json", "quick-cpu-no-bf16.json"):
        assert bench.output_path(argparse.Namespace(out=None, smoke=True), name).parent == Path(tempfile.gettempdir())
        assert bench.output_path(argparse.Namespace(out=None, smoke=False), name) == ROOT / "outputs" / "benchmarks" / name


def test_a_benchmark_report_place_that_refuses_files_is_found_before_timing(tmp_path, monkeypatch):
    """Fault round 11: a read-only --out folder was a PermissionError traceback after the timings (root writes
    anywhere, so the refusal is made by hand); the probe leaves nothing behind."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(gce.Path, "write_bytes", refuse)  # the probe's file (gce.probe_writable, as --output-dir's)
    with pytest.raises(gce.UserError, match="^cannot write the report .*x.json \\(Permission denied\\); pass --out"):
        bench.check_writable(tmp_path / "new" / "x.json")
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(gce, "write_atomically", refuse)
    with pytest.raises(gce.UserError, match="the timings are lost"):
        bench.write_report(tmp_path / "x.json", {})


@pytest.mark.parametrize("size, message", [
    ("15", "error: --accuracy-train must be 0 (all) or a multiple of 10, 10..1000000 images, got 15"),
    ("1000", "error: a subset of 1000 images needs 100 of class airplane, but the train split has only 4; lower "
             "--accuracy-train"),
])
def test_a_bad_accuracy_subset_is_one_line_naming_the_benchmarks_flag(tmp_path, size, message):
    """Fault round 7: --accuracy's subset was checked only after minutes of timing, as a traceback naming
    --train-subset."""
    from conftest import write_image_folder
    write_image_folder(tmp_path, {"train": 4, "test": 2})
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--accuracy", "--data-dir",
                           str(tmp_path), "--accuracy-train", size], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
    assert done.stderr.count("\n") == 1 and not done.stdout


def test_rescore_reference_has_help_and_reads_only_the_reference_layout(tmp_path):
    """Fault round 7: `rescore_reference.py --help` ran the script and rewrote three committed files; given a current
    run's files it ended in a KeyError traceback."""
    import shutil
    script = ROOT / "benchmarks" / "rescore_reference.py"
    written = [ROOT / "outputs" / "summary.md", ROOT / "outputs" / "reference-rescored" / "metrics.json"]
    before = [p.stat().st_mtime_ns for p in written]
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: rescore_reference.py [-h]")
    assert [p.stat().st_mtime_ns for p in written] == before
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "outputs").mkdir()
    shutil.copy(script, tmp_path / "benchmarks")
    shutil.copy(ROOT / "grad_cam_experiment.py", tmp_path)
    shutil.copy(ROOT / "outputs" / "run-10k-seed1" / "metrics.json", tmp_path / "outputs")
    shutil.copy(ROOT / "outputs" / "run-10k-seed1" / "audit_per_image.npz", tmp_path / "outputs")
    done = subprocess.run([sys.executable, str(tmp_path / "benchmarks" / "rescore_reference.py")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: outputs/metrics.json and outputs/audit_per_image.npz "
                                                           "are not the reference run's earlier layout"), done.stderr
    assert done.stderr.count("\n") == 1 and sorted(p.name for p in (tmp_path / "outputs").iterdir()) == [
        "audit_per_image.npz", "metrics.json"]


def test_rescore_reference_keeps_an_edited_summary(tmp_path):
    """Fault round 24: notes appended to outputs/summary.md were replaced without a word (a copy of the project: the
    script writes beside itself)."""
    import shutil
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(ROOT / "benchmarks" / "rescore_reference.py", tmp_path / "benchmarks")
    shutil.copy(ROOT / "grad_cam_experiment.py", tmp_path)
    shutil.copytree(ROOT / "outputs", tmp_path / "outputs", ignore=shutil.ignore_patterns("run-*", "seeds*", "*.png"))
    edited = (ROOT / "outputs" / "summary.md").read_text() + "\nmy notes\n"
    (tmp_path / "outputs" / "summary.md").write_text(edited)
    done = subprocess.run([sys.executable, str(tmp_path / "benchmarks" / "rescore_reference.py")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2 and done.stderr == (
        "error: outputs/summary.md differs from the tables this script writes (edited, or written by an older version); "
        "keep your copy elsewhere and pass --replace-summary, or restore it with git checkout outputs/summary.md\n")
    assert (tmp_path / "outputs" / "summary.md").read_text() == edited


@pytest.mark.parametrize("flags, message", [
    (["--images", "0"], "error: --images must be >= 2 (an interval needs two), got 0"),  # a GradCAM traceback
    (["--scorecam-images", "-1"], "error: --scorecam-images must be 0..--images (100), got -1"),  # all but one image
    (["--resamples", "0"], "error: --resamples must be 10..100000, got 0"),  # at the end, after minutes
    (["--data-dir", "{tmp}/nope"], "error: --data-dir {tmp}/nope has no train/ and test/ folders; pass an image-folder "
                                   "CIFAR-10 copy"),  # a traceback
    (["--images", "x"], "error: argument --images: invalid int value: 'x' (see --help)"),  # round 12: a usage block
    (["--out", " "], "error: --out must be a JSON file path, got ' '; leave --out out for the default"),  # round 13
    (["--out", str(ROOT / "outputs" / "metrics.json")], f"error: --out {ROOT / 'outputs' / 'metrics.json'} is an output "
     "of a grad_cam_experiment.py run, which this JSON would replace; pass a file name of its own"),  # round 21
])
def test_bf16_explanations_checks_its_flags_first(tmp_path, flags, message):
    """Fault round 8: bf16_explanations.py checked no flag (seen with native bf16 simulated)."""
    from conftest import write_image_folder
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    args = ["--data-dir", str(tmp_path), "--checkpoints", str(tmp_path), *(f.format(tmp=tmp_path) for f in flags)]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bf16_explanations.py"), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == message.format(tmp=tmp_path) + "\n", done.stderr


def test_the_naive_baselines_workers_outlive_a_signal_to_the_process_group():
    """Fault round 21: `timeout` (SIGTERM to the whole process group) killed a DataLoader worker first, and bench.py
    ended in torch's "DataLoader worker is killed by signal" traceback; workers now leave stopping to the main process."""
    import os
    import signal
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench
    split = gce.Split(torch.zeros(8, 3, 32, 32, dtype=torch.uint8), torch.arange(8) % 10)
    batches = iter(bench.naive_loader(split, 2, torch.device("cpu"), 0, workers=1))
    next(batches)
    for worker in batches._workers:
        os.kill(worker.pid, signal.SIGTERM)
    time.sleep(0.5)
    assert all(worker.is_alive() for worker in batches._workers)
    assert len([next(batches) for _ in range(3)]) == 3  # the epoch goes on (4 batches of 2)
    batches._shutdown_workers()


def test_rescore_reference_refuses_an_unknown_flag_in_one_line():
    """Fault round 12: the benchmark scripts without the project's parser printed argparse's usage block."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rescore_reference.py"), "--bogus"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == "error: unrecognized arguments: --bogus (see --help)\n", done.stderr


def test_a_bad_matplotlib_backend_fails_before_any_training(tmp_path):
    """Fault round 8: MPLBACKEND=bogus passed every check and ended in matplotlib's traceback after both models were
    trained (hours at full scale)."""
    import os
    done = subprocess.run([sys.executable, str(ROOT / "grad_cam_experiment.py"), "--quick", "--no-progress",
                           "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "MPLBACKEND": "bogus"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr  # matplotlib's reason between them:
    assert done.stderr.startswith("error: matplotlib, which draws the figures, cannot start: ")  # its wording varies
    assert done.stderr.endswith("(MPLBACKEND='bogus': unset it or set MPLBACKEND=Agg)\n")
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


def test_a_figure_function_under_a_bad_matplotlib_backend_says_so_in_one_line():
    """Fault round 9: faithfulness_figure called from Python ended in matplotlib's own traceback."""
    import os
    code = ("import json, grad_cam_experiment as g; g.faithfulness_figure(json.load(open("
            "'outputs/run-10k-seed1/metrics.json')), 'unused.png', False)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "MPLBACKEND": "bogus"})
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("grad_cam_experiment.UserError: matplotlib, which draws the figures, cannot start: ")
    assert last.endswith("(MPLBACKEND='bogus': unset it or set MPLBACKEND=Agg)") and not (ROOT / "unused.png").exists()
