"""The report and the README cannot drift from the committed outputs.

Every number they cite from a run is followed by an invisible marker `<!--m KEY | FORMAT -->`: KEY is a path with
`/` separators into outputs/metrics.json (or, prefixed `bench:`, into outputs/benchmarks/bench-cpu.json, `cam:` into
cam-family-cpu.json, `bf16:` into bf16-explanations-cpu.json, `seeds:` into outputs/seeds/metrics.json,
`seeds-full:` into outputs/seeds-full/metrics.json; list
items by index), FORMAT a Python format spec. The text right before the marker must be that value, formatted. Every image the
documents show must exist."""

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
           "seeds-full:": ROOT / "outputs" / "seeds-full" / "metrics.json"}


def lookup(key: str):
    prefix = next((p for p in SOURCES if p and key.startswith(p)), "")
    value = json.loads(SOURCES[prefix].read_text())
    for part in key[len(prefix):].split("/"):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def citation_problems(text: str) -> list[str]:
    """Every cited number whose text differs from the output it names (or names no output)."""
    problems = []
    for match in MARKER.finditer(text):
        key, spec = match.group(1), match.group(2)
        try:
            expected = format(lookup(key), spec)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            problems.append(f"{key}: not in the outputs ({exc!r})")
            continue
        if not text[:match.start()].endswith(expected):
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
    metrics = json.loads(SOURCES[""].read_text())
    written = {Path(f).name for f in metrics["figures"]}
    assert {Path(i).name for i in images if i.startswith("outputs/") and "benchmarks" not in i} <= written


def test_the_check_catches_a_drifted_number_and_an_unknown_key():
    value = lookup("models/standard/test_accuracy")
    right = f"accuracy {value:.1%}<!--m models/standard/test_accuracy | .1% -->"
    wrong = f"accuracy {value + 0.01:.1%}<!--m models/standard/test_accuracy | .1% -->"
    unknown = "accuracy 1<!--m models/nonexistent/test_accuracy | .1% -->"
    assert citation_problems(right) == []
    assert len(citation_problems(wrong)) == 1 and len(citation_problems(unknown)) == 1


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
