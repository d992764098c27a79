"""Which files belong to which run, and what an interrupted, concurrent, repeated or starved run leaves behind."""

import errno
import hashlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import grad_cam_experiment as gce

FIGURES = 12


@pytest.fixture
def argv(tiny_dataset, tmp_path):
    """The whole pipeline at its smallest on the tiny generated dataset (a few seconds)."""
    return ["--quick", "--data-dir", str(tiny_dataset), "--output-dir", str(tmp_path / "out"), "--train-subset", "20",
            "--test-subset", "20", "--no-progress", "--faithfulness-images", "2", "--sanity-images", "2",
            "--audit-images", "2", "--bootstrap-resamples", "10", "--audit-layers", "layer4.1.conv2",
            "--methods", "GradCAM", "--scorecam-images", "0", "--audit-occlusion-images", "0"]


def record(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def leftovers(out: Path) -> list[str]:
    """Temporary files of an interrupted write, anywhere under the output folder."""
    return [p.name for p in out.rglob("*") if ".partial-" in p.name]


def test_a_finished_run_names_every_file_it_wrote_with_its_hash(argv, tmp_path, capsys):
    out = tmp_path / "out"
    assert gce.main(argv) == 0
    run = record(out)
    assert run["status"] == "complete" and run["stage"] == "" and run["pid"] == os.getpid()
    names = set(run["files"])
    assert {"metrics.json", "summary.md", "audit_per_image.npz"} <= names
    assert len([n for n in names if n.endswith(".png")]) == FIGURES
    assert len([n for n in names if n.startswith("checkpoints/")]) == 2
    assert {n for n in names if "/" not in n} | {"run.json"} == set(gce.OUTPUT_FILES)  # check_output_dir's list
    for name, digest in run["files"].items():  # each as it is on disk
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["id"] == run["run_id"]  # metrics.json names its run and the files written before it
    assert set(metrics["run"]["files"]) == names - {"metrics.json", "summary.md"}
    assert f"run {run['run_id']}: {out / 'run.json'} lists every file it writes" in " ".join(
        capsys.readouterr().out.split())  # wrapped
    assert not leftovers(out)


EARLIER_METRICS = ('{"config": {"artifact_class": 6, "target_layer": "layer4.1.conv2", "seed": 0}, "models": {}, '
                   '"an": "earlier run"}')  # an earlier run's (content recognised: looks_like_run_output)


def test_ctrl_c_after_training_says_the_models_are_saved_and_keeps_an_earlier_runs_files(argv, tmp_path, monkeypatch,
                                                                                        capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text(EARLIER_METRICS)  # never deleted, never mistaken for this run's

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(gce, "shortcut_audit", interrupted)
    assert gce.main(argv) == 130
    err = capsys.readouterr().err.strip()
    run = record(out)
    assert "\n" not in err and err.startswith(
        f"interrupted during the shortcut audit, after training: both models are saved in {out / 'checkpoints'}, so "
        "the same command reuses them and redoes only the evaluation, audit and figures"), err
    assert f"marks run {run['run_id']} as interrupted and lists the 5 files it wrote or reused" in err  # 2 models, 3 figures
    assert err.endswith(f"metrics.json in {out} were not written by this run"), err
    assert run["status"] == "interrupted" and run["stage"] == "the shortcut audit"
    assert run["message"] == "stopped by SIGINT"
    assert (out / "metrics.json").read_text() == EARLIER_METRICS and not leftovers(out)
    monkeypatch.undo()
    assert gce.main(argv) == 0  # the same command: models reused, the rest redone
    assert "reusing checkpoint" in capsys.readouterr().out and record(out)["status"] == "complete"


def send_signal_on_call(monkeypatch, name: str, call: int, number=signal.SIGTERM, before=None):
    """Replaces gce.<name> by a wrapper that sends this process a signal on its call-th call (after `before(*args)`)."""
    real, calls = getattr(gce, name), []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            if before is not None:
                before(*args)
            os.kill(os.getpid(), number)  # the handler raises here, in this (the main) thread
        return real(*args, **kwargs)
    monkeypatch.setattr(gce, name, wrapper)


def test_sigterm_in_training_stops_as_ctrl_c_does_and_the_same_command_resumes(argv, tmp_path, monkeypatch, capsys):
    out, handler = tmp_path / "out", signal.getsignal(signal.SIGTERM)
    argv = [*argv, "--epochs", "3"]  # 20 images, batch 64: one step per epoch, so call 3 is in epoch 3
    send_signal_on_call(monkeypatch, "training_step", 3)
    assert gce.main(argv) == 143
    err = capsys.readouterr().err.strip()
    state = next((out / "checkpoints").glob("standard-*.epoch.pt"))
    assert "\n" not in err and err.startswith(
        "interrupted while training the standard model: the same command continues it after its last completed epoch "
        f"(saved in {state}; --no-resume starts over)"), err
    assert record(out)["message"] == "stopped by SIGTERM" and record(out)["status"] == "interrupted"
    assert record(out)["training_state"] == str(state)
    assert signal.getsignal(signal.SIGTERM) == handler  # main() puts the caller's handler back
    monkeypatch.undo()
    assert gce.main(argv) == 0
    assert "standard: resuming after epoch 2 of 3" in capsys.readouterr().out and not state.exists()


def test_sigterm_while_a_training_state_is_saved_leaves_no_partial_file(argv, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"

    def half_written_then_sigterm(contents, path):  # SIGTERM arrives while the first training state is written
        Path(path).write_bytes(b"half a training st")
        os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(gce.torch, "save", half_written_then_sigterm)
    assert gce.main(argv) == 143
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted while training the standard model: the same command trains it from epoch 1 "
                          "(no epoch had completed)"), err
    assert not leftovers(out) and not list((out / "checkpoints").glob("*.pt"))


def test_a_second_run_on_the_same_output_folder_is_refused_and_changes_nothing(argv, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps(dict(run_id="20261203T070000-99", pid=99, started="2026-12-03T07:00:00")))
    import fcntl
    with open(out / ".lock", "a") as other_run:  # another process's lock: a separate open file holds it
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert gce.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: another run (id 20261203T070000-99, pid 99, started 2026-12-03T07:00:00) is writing to "
                   f"--output-dir {out}; wait for it to end or pass another --output-dir")
    assert sorted(p.name for p in out.iterdir()) == [".lock", "run.json"] and record(out)["pid"] == 99


@pytest.mark.parametrize("damaged", ["{garbage", "[]", "null", "\x00\xff"])
def test_a_second_run_is_refused_in_one_line_when_the_first_runs_record_is_damaged(argv, tmp_path, capsys, damaged):
    """Fault round 18: a locked folder whose run.json was not JSON (or not a dict) gave a JSONDecodeError or
    AttributeError traceback instead of the refusal. Since fault round 21 such a run.json is refused before the lock
    is tried, as a file no run of this program wrote; the record is read tolerantly all the same (read_run_record)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(damaged, encoding="latin-1")
    import fcntl
    with open(out / ".lock", "a") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert gce.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --output-dir {out} holds files a run would replace: run.json (not recognisable as a run's "
                   "output: another program's file, or a damaged one); move it away or pass another --output-dir"), err
    assert gce.read_run_record(out / "run.json") == {}
    assert (out / "run.json").read_text(encoding="latin-1") == damaged  # left as it was


def test_main_twice_in_one_kernel_gives_the_same_results_and_leaks_no_state(argv, monkeypatch):
    """As a notebook runs it: the second run (checkpoints reused) computes the same numbers as the first, and the
    process's grad mode, autocast, TF32 switches, random states and SIGTERM handler are as before each run."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    real_fp32 = gce.fp32_without_tf32

    def switch_off(device):  # what it does on a GPU, here on the CPU too: the run must switch them back
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        real_fp32(device)
    monkeypatch.setattr(gce, "fp32_without_tf32", switch_off)
    torch.manual_seed(123)
    np.random.seed(123)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), signal.getsignal(signal.SIGTERM))
    out = Path(argv[argv.index("--output-dir") + 1])
    runs = []
    for _ in range(2):
        assert gce.main(argv) == 0
        assert torch.is_grad_enabled() and not torch.is_autocast_enabled() and not torch.is_inference_mode_enabled()
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert torch.equal(torch.get_rng_state(), before[0]) and np.array_equal(np.random.get_state()[1], before[1])
        assert signal.getsignal(signal.SIGTERM) == before[2]
        runs.append(json.loads((out / "metrics.json").read_text()))
    assert runs[1]["models"]["biased"]["reused_checkpoint"] and runs[0]["run"]["id"] != runs[1]["run"]["id"]
    for part in ("shortcut_audit", "faithfulness", "sanity_check"):
        assert runs[0][part] == runs[1][part], part
    assert runs[0]["models"]["biased"]["test_accuracy"] == runs[1]["models"]["biased"]["test_accuracy"]


def test_too_little_free_space_is_found_before_training(argv, monkeypatch, capsys):
    real = gce.shutil.disk_usage
    monkeypatch.setattr(gce.shutil, "disk_usage", lambda path: real(path)._replace(free=10 * 2 ** 20))
    assert gce.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: only 10 MB free in ") and "training the standard model writes up to 300 MB" in err


def test_a_full_disk_while_writing_results_loses_nothing(argv, tmp_path, monkeypatch, capsys):
    """The disk fills while metrics.json is written: one error line, the run recorded as failed, no partial file, and
    the metrics.json already there (an earlier run's) still whole."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text(EARLIER_METRICS)
    real_write = Path.write_text

    def full(self, text, *args, **kwargs):
        if self.name.startswith("metrics.json.partial-"):
            real_write(self, text[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, text, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", full)
    assert gce.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: No space left on device ({out / 'metrics.json'}); free some space or pass another "
                   f"--output-dir ({out / 'run.json'} lists what this run wrote)"), err
    assert (out / "metrics.json").read_text() == EARLIER_METRICS and not leftovers(out)
    run = record(out)
    assert run["status"] == "failed" and run["stage"] == "writing metrics.json" and "No space left" in run["message"]


@pytest.mark.parametrize("inside_data", [True, False])
def test_a_file_system_error_before_the_run_begins_does_not_point_to_an_earlier_runs_record(argv, tmp_path,
                                                                                          monkeypatch, capsys,
                                                                                          inside_data):
    """...and its advice names the flag of the folder that refused (a data folder advised another --output-dir)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text('{"run_id": "an earlier run"}')
    where = f"{argv[argv.index('--data-dir') + 1]}/train" if inside_data else "/elsewhere/train"

    def unreadable(*args, **kwargs):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), where)
    monkeypatch.setattr(gce, "load_cifar10", unreadable)
    assert gce.main(argv) == 2
    flag = "--data-dir" if inside_data else "--output-dir"
    assert capsys.readouterr().err.strip() == f"error: Permission denied ({where}); check the permissions or pass another {flag}"


def test_a_second_ctrl_c_while_the_first_is_handled_is_ignored(argv, tmp_path, monkeypatch, capsys):
    """Two Ctrl-C in quick succession: the second lands while run.json is being marked and the message written; it is
    ignored (it printed tracebacks from wherever it landed), and main() then puts the caller's handlers back."""
    out, handlers = tmp_path / "out", (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    real_message = gce.RunRecord.interruption_message

    def second_ctrl_c(self):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        return real_message(self)
    monkeypatch.setattr(gce.RunRecord, "interruption_message", second_ctrl_c)
    send_signal_on_call(monkeypatch, "shortcut_audit", 1, signal.SIGINT)
    assert gce.main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("interrupted during the shortcut audit, after training"), err
    assert record(out)["status"] == "interrupted" and record(out)["message"] == "stopped by SIGINT"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


@pytest.mark.parametrize("where, says", [
    ("load_cifar10", "interrupted (SIGINT) before the run began writing; nothing was written to {out}"),
    ("console_summary", "interrupted (SIGINT) after run {run_id} had ended (complete); {out}/run.json lists the files "
                        "it wrote or reused"),
])
def test_an_interruption_outside_the_runs_record_says_whether_anything_was_written(argv, tmp_path, monkeypatch, capsys,
                                                                                  where, says):
    out = tmp_path / "out"
    send_signal_on_call(monkeypatch, where, 1, signal.SIGINT)
    assert gce.main(argv) == 130
    run_id = record(out)["run_id"] if (out / "run.json").exists() else None
    assert capsys.readouterr().err.strip() == says.format(out=out, run_id=run_id)
    assert (where == "load_cifar10") == (not out.exists())


def test_the_script_stopped_while_starting_or_twice_prints_one_line_and_no_traceback(tiny_dataset, tmp_path):
    """As a user does it: Ctrl-C while torch loads, and two Ctrl-C a moment apart at several points of a run. (A
    Ctrl-C before the script's first line runs, while Python itself starts, is Python's own one line, status 1.)"""
    import subprocess
    import sys
    import time
    script = Path(gce.__file__)
    for i, (delay, gap) in enumerate([(0.5, 0.0), (2.0, 0.01), (4.0, 0.05), (6.0, 0.0), (8.0, 0.2)]):
        process = subprocess.Popen([sys.executable, str(script), "--quick", "--data-dir", str(tiny_dataset),
                                    "--output-dir", str(tmp_path / f"out{i}"), "--train-subset", "20", "--test-subset",
                                    "20", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        time.sleep(gap)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert process.returncode in (0, 130) or (process.returncode == 1 and lines == ["KeyboardInterrupt"]), err
        if process.returncode == 130:
            assert len(lines) == 1 and lines[0].startswith("interrupted"), err
    process = subprocess.Popen([sys.executable, str(script), "--quick", "--data-dir", str(tiny_dataset), "--output-dir",
                                str(tmp_path / "term")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)  # while torch loads: one line, not a silent exit (third fault round)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143 and err.strip().startswith("interrupted") and "Traceback" not in err, err


def test_a_console_that_refuses_output_stops_the_run_with_one_line_that_says_so(argv, tmp_path, monkeypatch, capsys):
    """stdout piped into `head -1` (its reader gone) or sent to a full disk: the error names the console, not the
    output folder, and run.json records the failure."""
    out, written = tmp_path / "out", []

    class ClosedPipe:
        def write(self, text):
            if any("run.json" in line for line in written):  # after the record has begun
                raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
            written.append(text)
            return len(text)

        def flush(self):
            pass

        def fileno(self):
            raise ValueError("no file descriptor")  # main() cannot redirect it: it must still give its one line
    monkeypatch.setattr(gce.sys, "stdout", ClosedPipe())
    assert gce.main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "error: could not write to the console (Broken pipe: a pipe whose reader has ended, such as | head, or a full "
        "disk behind > file), so the run stopped; send the output to a file with room, or pass --quiet")
    assert record(out)["status"] == "failed" and record(out)["message"] == "Broken pipe"


@pytest.mark.parametrize("flags, state_saved, says", [
    ([], False, "trains it from epoch 1 (no epoch had completed)"),
    ([], True, "continues it after its last completed epoch (saved in {state}; --no-resume starts over)"),
    (["--no-resume"], True, "trains it from epoch 1 (--no-resume or --retrain)"),
    (["--retrain"], True, "trains it from epoch 1 (--no-resume or --retrain)"),
])
def test_what_an_interrupted_training_says_follows_its_own_training_state(argv, tmp_path, monkeypatch, capsys, flags,
                                                                          state_saved, says):
    """The message reads this configuration's own state file (an earlier run's, of the same key, counts too; a state
    of another configuration does not), and the flags that make the same command start over."""
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "standard-0123456789.epoch.pt").write_bytes(b"another configuration's state")
    cfg = gce.parse_config([*argv, *flags])
    train, test, _ = gce.load_cifar10(cfg, torch.device("cpu"))
    state = gce.checkpoint_path(cfg, torch.device("cpu"), False, gce.data_fingerprint(train, test))[0].with_suffix(
        ".epoch.pt")
    if state_saved:
        state.write_bytes(b"saved by an earlier, interrupted run")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(gce, "train_model", interrupted)
    assert gce.main([*argv, *flags]) == 130
    err = capsys.readouterr().err
    assert err.startswith(f"interrupted while training the standard model: the same command {says.format(state=state)}")
    assert record(out)["training_state"] == str(state)


def test_an_interruption_while_a_saved_checkpoint_is_loaded_says_the_same_command_reuses_it(argv, tmp_path,
                                                                                            monkeypatch, capsys):
    """SIGTERM while the standard model's checkpoint loads (the fault round: it said 'trains it from epoch 1'); and
    when the file there is unusable, the stage is training by the time it is interrupted."""
    out = tmp_path / "out"
    assert gce.main(argv) == 0
    checkpoint = next((out / "checkpoints").glob("standard-*.pt"))
    send_signal_on_call(monkeypatch, "load_checkpoint", 1)
    assert gce.main(argv) == 143
    assert capsys.readouterr().err.startswith(
        f"interrupted while loading the standard model's checkpoint: the same command reuses it ({checkpoint}); ")
    monkeypatch.undo()
    checkpoint.write_bytes(b"damaged")
    send_signal_on_call(monkeypatch, "train_model", 1)
    assert gce.main(argv) == 143
    assert "interrupted while training the standard model: the same command trains it from epoch 1" in (
        capsys.readouterr().err)


def test_a_folder_where_a_checkpoint_goes_is_reported_before_training(argv, tmp_path, monkeypatch, capsys):
    cfg = gce.parse_config(argv)
    train, test, _ = gce.load_cifar10(cfg, torch.device("cpu"))
    path = gce.checkpoint_path(cfg, torch.device("cpu"), False, gce.data_fingerprint(train, test))[0]
    path.mkdir(parents=True)

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the checkpoint could never be saved")
    monkeypatch.setattr(gce, "train_model", no_training)
    assert gce.main(argv) == 2
    assert capsys.readouterr().err.strip() == (f"error: {path} is a folder where the standard model's checkpoint goes; "
                                               "move it away")


def test_sighup_from_a_closed_terminal_marks_the_run_interrupted_like_sigterm(argv, tmp_path, monkeypatch, capsys):
    out, handler = tmp_path / "out", signal.getsignal(signal.SIGHUP)
    send_signal_on_call(monkeypatch, "shortcut_audit", 1, signal.SIGHUP)
    assert gce.main(argv) == 129
    assert capsys.readouterr().err.startswith("interrupted during the shortcut audit, after training")
    assert record(out)["status"] == "interrupted" and record(out)["message"] == "stopped by SIGHUP"
    assert signal.getsignal(signal.SIGHUP) == handler


def test_a_test_set_smaller_than_asked_is_said_for_each_stage_that_gets_fewer_images(argv, capsys):
    """20 test images (2 per class): the audit asked 5 per group gets 2 frogs, faithfulness asked 30 gets 20 and the
    sanity check (asked 25) its first 20; each stage says so instead of silently running on fewer."""
    assert gce.main([*argv, "--audit-images", "5", "--faithfulness-images", "30", "--sanity-images", "25"]) == 0
    log = " ".join(capsys.readouterr().out.split())
    assert "note: the test set gave the audit 2 frogs, 5 nonfrogs (asked: 5 per group)" in log
    assert "note: the test set gave the faithfulness measures 20 images (asked: 30), so the sanity check uses 20" in log
    metrics = json.loads((Path(argv[argv.index("--output-dir") + 1]) / "metrics.json").read_text())
    assert metrics["sanity_check"]["images"] == 20


NOT_A_RUNS = "not recognisable as a run's output: another program's file, or a damaged one"


def test_files_named_like_outputs_that_no_run_wrote_are_refused_not_replaced(argv, tmp_path, capsys):
    """Fault round 21: a user's own metrics.json and summary.md in the output folder (no run.json) were replaced
    without a word. A run now refuses before any work; an earlier run's outputs (listed in its run.json, or
    recognised by their content, as the committed outputs/ without a run.json) are replaced as before."""
    from PIL import Image
    out = tmp_path / "out"
    out.mkdir()
    mine = {"metrics.json": b'{"config": {"artifact_class": 6}, "my": "notes"}',  # round 23: counted as a run's
            "summary.md": b"# Results: my notes\n", "audit_per_image.npz": b"PK not a zip",
            "notes.txt": b"keep"}
    for name, content in mine.items():
        (out / name).write_bytes(content)
    Image.new("RGB", (4, 4)).save(out / "faithfulness.png")  # a PNG, but not one matplotlib drew
    assert gce.main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --output-dir {out} holds files a run would replace: metrics.json, summary.md, audit_per_image.npz, "
        "faithfulness.png (not recognisable as a run's output: another program's file, or a damaged one); move them "
        "away or pass another --output-dir")
    assert all((out / name).read_bytes() == content for name, content in mine.items())
    assert sorted(p.name for p in out.iterdir()) == sorted([*mine, "faithfulness.png"])  # no run.json, no checkpoints/
    # Listed in an earlier run's record with the sha256 they have: that run's, replaced as before; with another sha256
    # (fault round 22: a user's edit of a run's summary.md was replaced silently), changed since: refused.
    digests = {name: gce.hashlib.sha256(content).hexdigest() for name, content in mine.items()}
    (out / "run.json").write_text(json.dumps(dict(run_id="earlier", files={**digests, "summary.md": "0" * 64})))
    assert gce.foreign_outputs(out) == {"summary.md": "changed since a run wrote it: its sha256 in run.json differs",
                                        "faithfulness.png": NOT_A_RUNS}
    assert gce.main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --output-dir {out} holds files a run would replace: summary.md (changed since a run wrote it: its "
        "sha256 in run.json differs); "
        "faithfulness.png (not recognisable as a run's output: another program's file, or a damaged one); move them "
        "away or pass another --output-dir")
    assert all((out / name).read_bytes() == content for name, content in mine.items())
    # Fault round 23: a rerun replaced the record, and a file the earlier run wrote (summary.md here) then edited was
    # unlisted, recognised by its heading and replaced. A record carries the earlier ones' files forward.
    (out / "summary.md").write_text("# Results: x\n\n## Models\n")
    (out / "faithfulness.png").unlink()
    (out / "run.json").write_text(json.dumps(dict(run_id="earlier", files={"summary.md": gce.hashlib.sha256(
        b"# Results: x\n\n## Models\n").hexdigest()})))
    with gce.RunRecord(out, gce.Config()) as rerun:
        rerun.wrote(out / "notes.txt")  # an interrupted rerun that wrote something else
    assert record(out)["earlier_files"] == {
        "summary.md": gce.hashlib.sha256(b"# Results: x\n\n## Models\n").hexdigest()}
    (out / "summary.md").write_text("# Results: x\n\n## Models\nmy appended notes\n")
    assert gce.foreign_outputs(out)["summary.md"] == "changed since a run wrote it: its sha256 in run.json differs"
    # Recognised by content: every output file of the committed reference run, which has no run.json.
    reference = Path(gce.__file__).parent / "outputs"
    assert not (reference / "run.json").exists()
    assert {p.name for p in reference.iterdir() if p.name in gce.OUTPUT_FILES} >= {"metrics.json", "summary.md",
                                                                                    "audit_per_image.npz"}
    assert gce.foreign_outputs(reference) == {}


def test_an_earlier_runs_checkpoints_folder_is_refused_as_the_output_folder(argv, tmp_path, capsys):
    """Fault round 23's borderline: a run nested in another run's checkpoints/ (a mistyped path) was accepted."""
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "run.json").write_text('{"run_id": "earlier"}')
    argv[argv.index("--output-dir") + 1] = str(out / "checkpoints")
    assert gce.main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --output-dir {out / 'checkpoints'} is the checkpoints/ folder of the run in {out}; pass {out} itself "
        "(its models are reused from there) or another folder")
    assert sorted(p.name for p in out.rglob("*")) == ["checkpoints", "run.json"]


def test_a_summary_with_notes_added_is_told_from_a_runs_without_a_record(tmp_path):
    """Fault round 24: with run.json deleted, notes appended to a run's summary.md passed as the run's (its heading) and
    were replaced. Without a record, summary.md is a run's when it is what summary_markdown writes from the
    metrics.json beside it. (An edited metrics.json cannot be told from a run's without the record's sha256.)"""
    import shutil
    run = Path(gce.__file__).parent / "outputs" / "run-10k-seed1"
    for name in ("metrics.json", "summary.md"):
        shutil.copy(run / name, tmp_path)
    assert gce.foreign_outputs(tmp_path) == {}
    with open(tmp_path / "summary.md", "a") as summary:
        summary.write("\nmy notes\n")
    assert gce.foreign_outputs(tmp_path) == {"summary.md": NOT_A_RUNS}
