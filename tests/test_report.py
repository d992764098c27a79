"""The report and the README cannot drift from the committed outputs.

Every number they cite from a run is followed by an invisible marker `<!--m KEY | FORMAT -->`: KEY is a path with
`/` separators into outputs/metrics.json (or, prefixed `bench:`, into outputs/benchmarks/bench-cpu.json, `cam:` into
cam-family-cpu.json, `bf16:` into bf16-explanations-cpu.json, `seeds:` into outputs/seeds/metrics.json,
`seeds-full:` into outputs/seeds-full/metrics.json, `ref:` into outputs/reference-rescored/metrics.json, `seed1:` into
outputs/run-10k-seed1/metrics.json, `quick-nobf16:` into outputs/benchmarks/quick-cpu-no-bf16.json); list items by index, or by their fields: `records[model=biased,corner=top-left]`
is the one item with those values. FORMAT is a Python format spec. The whole number right before the marker must be
that value, formatted (`10.5%` does not pass for `0.5%`), and on the README's first screen every decimal number and
percentage carries a marker. Every image the documents show must exist."""

import functools
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["Milestone2_Report.md", "README.md"]
MARKER = re.compile(r"<!--m (.+?) \| (\S+) -->")
SOURCES = {"": ROOT / "outputs" / "metrics.json", "bench:": ROOT / "outputs" / "benchmarks" / "bench-cpu.json",
           "cam:": ROOT / "outputs" / "benchmarks" / "cam-family-cpu.json",
           "bf16:": ROOT / "outputs" / "benchmarks" / "bf16-explanations-cpu.json",
           "seeds:": ROOT / "outputs" / "seeds" / "metrics.json",
           "seeds-full:": ROOT / "outputs" / "seeds-full" / "metrics.json",
           "ref:": ROOT / "outputs" / "reference-rescored" / "metrics.json",
           "seed1:": ROOT / "outputs" / "run-10k-seed1" / "metrics.json",
           "quick-nobf16:": ROOT / "outputs" / "benchmarks" / "quick-cpu-no-bf16.json"}
SELECTOR = re.compile(r"^(\w+)\[(.+)\]$")
NUMBER = re.compile(r"[+\-\u2212]?\d[\d,]*(?:\.\d+)?%?$")


@functools.lru_cache(maxsize=None)
def load(path: Path):
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=None)
def lookup(key: str):
    prefix = next((p for p in SOURCES if p and key.startswith(p)), "")
    value = load(SOURCES[prefix])
    for part in key[len(prefix):].split("/"):
        selector = SELECTOR.match(part)
        if selector:  # records[model=biased,corner=top-left]: the one list item with these field values
            where = dict(item.split("=", 1) for item in selector.group(2).split(","))
            (value,) = [r for r in value[selector.group(1)] if all(str(r.get(k)) == v for k, v in where.items())]
        else:
            value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def citation_problems(text: str) -> list[str]:
    """Every cited number whose text differs from the output it names (or names no output)."""
    problems = []
    for match in MARKER.finditer(text):
        key, spec = match.group(1), match.group(2)
        try:
            expected = format(lookup(key), spec)
        except (KeyError, IndexError, ValueError, TypeError) as exc:  # ValueError: no or several items selected
            problems.append(f"{key}: not in the outputs ({exc!r})")
            continue
        before = text[:match.start()]
        number = NUMBER.search(before[-40:])  # the number that ends right before the marker (a tail: not O(n^2))
        if not before.endswith(expected) or (number and len(number.group()) > len(expected)):
            problems.append(f"{key}: the outputs say {expected}, the text says {text[max(0, match.start() - 12):match.start()]!r}")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_cited_number_is_the_committed_output(document):
    text = (ROOT / document).read_text()
    assert len(MARKER.findall(text)) >= (20 if document.startswith("Milestone") else 2), "cite numbers with markers"
    assert citation_problems(text) == []


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_figure_shown_exists(document):
    text = (ROOT / document).read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images, "the document shows no figure"
    for image in images:
        assert (ROOT / image).is_file(), f"{document} shows {image}, which is not in the repository"
    for image in (i for i in images if i.startswith("outputs/") and "benchmarks" not in i):
        run = ROOT / Path(image).parent / "metrics.json"  # the run that wrote it says so
        assert Path(image).name in {Path(f).name for f in load(run)["figures"]}, f"{image} is not in {run}'s figures"


def test_the_check_catches_a_drifted_number_and_an_unknown_key():
    value = lookup("models/standard/test_accuracy")
    right = f"accuracy {value:.1%}<!--m models/standard/test_accuracy | .1% -->"
    wrong = f"accuracy {value + 0.01:.1%}<!--m models/standard/test_accuracy | .1% -->"
    longer = f"accuracy 1{value:.1%}<!--m models/standard/test_accuracy | .1% -->"  # ends with the value, is not it
    unknown = "accuracy 1<!--m models/nonexistent/test_accuracy | .1% -->"
    assert citation_problems(right) == []
    for text in (wrong, longer, unknown):
        assert len(citation_problems(text)) == 1, text


def test_records_are_selected_by_their_fields():
    key = "ref:shortcut_audit/records[model=biased,method=Grad-CAM,layer=layer4.1.conv2,group=nonfrogs,corner=top-left,"
    value = lookup(key + "measure=point_px]/delta/mean")
    assert citation_problems(f"{value:+.2f}<!--m {key}measure=point_px]/delta/mean | +.2f -->") == []
    assert len(citation_problems(f"1<!--m {key}measure=none]/delta/mean | .2f -->")) == 1  # no such record
    assert len(citation_problems("1<!--m ref:shortcut_audit/records[model=biased]/n | d -->")) == 1  # many


def first_screen_problems(text: str) -> list[str]:
    """Decimal numbers and percentages on the README's first screen (before its first '## ' heading) without a marker."""
    screen = text[:text.index("\n## ")]
    unmarked = re.finditer(r"(?<![\w.])[+\-\u2212]?\d[\d,]*(?:\.\d+%?|%)(?![\d%])(?!<!--m )", screen)
    return [screen[max(0, m.start() - 30):m.end()] for m in unmarked]


def test_every_number_on_the_readme_first_screen_has_a_marker():
    assert first_screen_problems((ROOT / "README.md").read_text()) == []
    assert first_screen_problems("x 0.5<!--m a | .1f --> y 12.5% z\n## next") == ["x 0.5<!--m a | .1f --> y 12.5%"]


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Set up and run\s+```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert len(block) == 2, "the README promises exactly two set-up commands"
    assert block[1] in (ROOT / ".ci" / "run").read_text(), ".ci/run must run the README's test command"


def test_the_readme_python_example_runs(model, images):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"### The explanation methods from Python.*?```python\n(.*?)```", readme, re.S).group(1)
    scope = {"model": model, "x": images[:2], "classes": [3, 5]}
    exec(code, scope)
    assert scope["maps"].shape == scope["guided"].shape == (2, 32, 32) and scope["grads"].shape == (2, 3, 32, 32)
    assert scope["drops"].shape == (2, 32, 32) and scope["result"].classes.shape == (2,)
