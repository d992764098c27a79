"""Figures say what they show: the colour bar is drawn in the overlays' own colours."""

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

import grad_cam_experiment as gce


def overlay_colour(value: float) -> np.ndarray:
    """The colour an overlay gives a map value, with the image fully covered (alpha 1)."""
    return gce.overlay_heatmap(np.zeros((1, 1, 3), np.uint8), np.array([[value]]), alpha=1.0)[0, 0]


def test_colour_bar_pixels_are_the_overlay_colours_of_their_values():
    # Render a figure and read the colour bar back pixel by pixel, bottom (0) to top (1). Each pixel must be the
    # overlay's colour for its value (one 1/256 colour step either side: a pixel spans about 1/200 of the bar).
    # With matplotlib's own 'jet' in the bar, which is what it used to be, this fails by up to 34/255.
    fig = gce.figure_grid([gce.Panel(np.zeros((32, 32, 3), np.uint8), "caption", np.zeros((32, 32)))], 1, "title")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    bar = fig.axes[-1].get_window_extent()
    column = int((bar.x0 + bar.x1) / 2)
    rows = range(int(bar.y0) + 2, int(bar.y1) - 2)
    assert len(rows) > 100
    jet_distance = 0.0
    for y in rows:
        value = (y + 0.5 - bar.y0) / (bar.y1 - bar.y0)
        pixel = rgba[rgba.shape[0] - 1 - y, column, :3]
        near = [overlay_colour(min(max(value + step / 256, 0.0), 1.0)) for step in (-1, 0, 1)]
        assert any((pixel == colour).all() for colour in near), (value, pixel, near)
        jet_distance = max(jet_distance, np.abs(np.array(matplotlib.colormaps["jet"](value)[:3]) * 255 - pixel).max())
    assert jet_distance > 20  # the test tells the two colormaps apart


def test_overlay_uses_opencv_jet_binned_like_the_colour_bar():
    # OpenCV's 256 JET colours, value v in colour floor(256 v) (the top one from 255/256 up), exactly as the
    # colour bar's colormap bins them. (cv2.applyColorMap(uint8(255 v)), the old overlay, put 0.5 in colour 127.)
    import cv2
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    for value, index in [(0.0, 0), (0.5, 128), (0.4999, 127), (37.5 / 256, 37), (255.5 / 256, 255), (1.0, 255)]:
        assert (overlay_colour(value) == lut[index]).all(), value
    values = np.random.default_rng(0).random(1000)
    overlay = gce.overlay_heatmap(np.zeros((1, 1000, 3), np.uint8), values[None], alpha=1.0)[0]
    assert (overlay == gce.heat_colormap()(values, bytes=True)[:, :3]).all()


def test_table_columns_are_as_wide_as_their_header_or_widest_cell(capsys):
    gce.print_table(["run name", "epoch", "loss"], [["standard", 1, 2.5], ["biased", 12, 0.123456]])
    gce.print_table(["run name", "epoch", "loss"], [["biased", 2, 1.0]], header=False)
    assert capsys.readouterr().out.splitlines() == [
        "| run name | epoch |   loss |",
        "| :------- | ----: | -----: |",
        "| standard |     1 | 2.5000 |",
        "| biased   |    12 | 0.1235 |",
        "| biased   |     2 | 1.0000 |"]


def test_the_console_summary_of_a_real_run_fits_a_terminal_and_every_table_goes_to_summary_md():
    # The committed 10k-image seed-1 run: the biased model uses the top-left corner, so every verdict cell is filled.
    import json
    from pathlib import Path
    metrics = json.loads((Path(gce.__file__).parent / "outputs" / "run-10k-seed1" / "metrics.json").read_text())
    lines = gce.console_summary(metrics)
    assert len(lines) <= 30 and max(map(len, lines)) <= 110
    assert any(line.startswith("The biased model uses the square at: top-left (p(frog)") for line in lines)
    grad_cam = next(line for line in lines if line.startswith("Grad-CAM "))
    record = next(r for r in metrics["shortcut_audit"]["records"] if (r["model"], r["method"], r["layer"], r["group"],
                  r["corner"], r["measure"]) == ("biased", "Grad-CAM", "layer4.1.conv2", "nonfrogs", "top-left", "point_px"))
    assert grad_cam.split()[1:3] == [f"{record['delta']['mean']:+.2f}",
                                     f"[{record['delta']['ci95'][0]:.2f},{record['delta']['ci95'][1]:.2f}]"]
    verdict = next(v for v in metrics["shortcut_audit"]["verdicts"]
                   if (v["method"], v["layer"], v["group"]) == ("Grad-CAM", "layer4.1.conv2", "nonfrogs"))
    assert grad_cam.endswith(" " + verdict["verdict"])
    tables = gce.summary_markdown(metrics)
    assert f"{gce._fmt_ci(record['delta'], '+.2f')} ({record['stamped']:.2f} vs {record['clean']:.2f})" in tables
    assert tables.count("\n## Change of ") == 4 * 2  # every measure, both groups


def test_a_summary_of_a_partial_report_says_which_sections_it_lacks():
    """Fault round 4: without its audit, summary_markdown returned a shorter summary that never said so."""
    import json
    from pathlib import Path
    metrics = json.loads((Path(gce.__file__).parent / "outputs" / "run-10k-seed1" / "metrics.json").read_text())
    assert "This metrics.json holds no" not in gce.summary_markdown(metrics)
    partial = {k: v for k, v in metrics.items() if k not in ("shortcut_audit", "sanity_check")}
    tables = gce.summary_markdown(partial)
    assert ("This metrics.json holds no shortcut_audit, no sanity_check (an unfinished or partial run): those sections "
            "are left out.") in tables
    assert "## Shortcut audit" not in tables and "## Faithfulness" in tables
    header = gce.summary_markdown({k: v for k, v in metrics.items() if k not in ("data", "timings")}).splitlines()[2]
    assert header.startswith("training and test image counts not recorded, ") and "took an unrecorded time" in header
    # (it said '0 training / 0 test images' and 'took 0 s': the rescored reference run has neither section)


def test_the_console_summary_says_what_its_short_lines_count():
    """'Other layers: layer4.1 6 n/a' and 'uses the square at: no corner:' were too terse to read (new-user trial)."""
    import copy
    import json
    from pathlib import Path
    metrics = json.loads((Path(gce.__file__).parent / "outputs" / "run-10k-seed1" / "metrics.json").read_text())
    lines = gce.console_summary(metrics)
    others = " ".join(" ".join(lines).split())  # console_lines wraps at 110 characters, indenting
    assert "Verdicts at the other audited layers (methods per verdict; rows in summary.md): layer4.1: " in others
    layer3 = [v["verdict"] for v in metrics["shortcut_audit"]["verdicts"]
              if (v["layer"], v["group"]) == ("layer3", "nonfrogs")]
    assert f"layer3: {layer3.count(layer3[0])} {layer3[0]}" in others
    unused = copy.deepcopy(metrics)
    for p in unused["shortcut_audit"]["predictions"]:
        p["use"]["ci95"] = [-0.01, 0.02]  # no corner raises p(frog) clearly
    text = " ".join(" ".join(gce.console_summary(unused)).split())
    assert ("The biased model uses the square at: no corner (adding it raises no corner's p(frog) clearly), so there "
            "is no shortcut to reveal and every verdict is n/a") in text
    for p in unused["shortcut_audit"]["predictions"]:
        p["use"].update(n=1, ci95=[0.5, 0.5])  # fault round 12: one image's zero-width "interval" read as a used corner
    text = " ".join(" ".join(gce.console_summary(unused)).split())
    assert ("The biased model uses the square at: unknown: one non-frog image in the audit cannot tell, so every "
            "verdict is unclear") in text


def test_an_all_zero_map_is_marked_in_its_caption():
    """Min-max scaling makes a map that is 0 everywhere look like 'lowest everywhere' (new-user trial): say so."""
    picture = np.zeros((32, 32, 3), np.uint8)
    some = np.zeros((32, 32))
    some[3, 4] = 0.5
    fig = gce.figure_grid([gce.Panel(picture, "flat", np.zeros((32, 32))), gce.Panel(picture, "some", some),
                           gce.Panel(picture, "image only")], 3, "title")
    assert [ax.get_title() for ax in fig.axes[:3]] == ["flat\n(map is 0 everywhere)", "some", "image only"]
