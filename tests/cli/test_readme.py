"""The README cannot drift: every example block it marks is what the command prints today,
and its Python section runs. (`benchmarks/readme_numbers.py` rewrites the blocks and the
numbers that come from training.)"""

import subprocess
import sys

import pytest
from helpers.readme import README, examples, matches, run_example

EXAMPLES = list(examples())


def test_the_readme_marks_its_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("folder, args, block, span", EXAMPLES,
                         ids=[" ".join(e[1]) for e in EXAMPLES])
def test_readme_example_is_what_the_command_prints(folder, args, block, span):
    printed = run_example(folder, args)
    assert matches(block, printed), f"README shows:\n{block}\ncnnrun prints:\n{printed}"


def test_use_it_from_python_runs_and_prints_what_the_readme_says(tmp_path):
    """The 'Use it from Python' block, run as a script in a folder that has configs/."""
    text = README.read_text()
    code = text.split("<!-- python example -->\n```python\n")[1].split("```")[0]
    shown = text.split("<!-- python example output -->\n```\n")[1].split("```")[0]
    (tmp_path / "configs").symlink_to(README.parent / "configs")
    (tmp_path / "example.py").write_text(code)
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert matches(shown, r.stdout), f"README shows:\n{shown}\nthe code prints:\n{r.stdout}"


def test_a_fresh_lenet5_training_gives_the_accuracy_the_readme_states(tmp_path):
    """The README's headline number, from the command it gives (about 13 s on 2 cores). Within
    5 of the 2,000 test digits: other BLAS builds may round a logit differently."""
    import re

    from helpers.cli import ROOT, invoke
    stated = float(re.search(r"<!-- n:lenet5-accuracy -->([\d.]+) %", README.read_text())[1])
    r = invoke("train", ROOT / "configs" / "lenet5.yaml", "--out", tmp_path / "run", "--quiet")
    assert r.exit_code == 0, r.output
    got = float(re.search(r"test accuracy ([\d.]+)%", r.output)[1])
    assert abs(got - stated) <= 0.25, (got, stated)
