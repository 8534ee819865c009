"""The command lines the README and docs/ quote are all found (helpers/markdown.py reads
them), and every module they run exists."""
from __future__ import annotations

import importlib.util

from helpers.markdown import COMMANDS, Command, command_in, placeholders, split_line, substitute


def test_the_commands_are_found():
    """The extraction itself: the fresh-machine line, an `exec` in a SLURM script with its
    bash array, usage brackets and placeholders, inline spans across lines."""
    modules = {c.module for c in COMMANDS}
    assert {"src.run", "src.report", "src.predict", "src.bench"} <= modules, modules
    readme = [c for c in COMMANDS if c.source.startswith("README.md")]
    assert any(c.module == "src.run" and c.args == ["+experiment=baseline"] for c in readme)
    assert any(c.args == ["+experiment=card_study", "tuner.plan=true"] for c in readme)
    words = split_line(placeholders(substitute(
        'CIFAR10_DIR=../d .venv/bin/python -m src.run "${s[@]}" a.b="$X" && exec python -m src.bench tuner '
        "[--trials 6] [--quick]  # a comment", {"X": "v w"}, {"s": "+experiment=seeds seed=1"})))
    assert [command_in(w, "here") for w in words] == [
        Command("here", "src.run", ["+experiment=seeds", "seed=1", "a.b=v w"]),
        Command("here", "src.bench", ["tuner", "--trials", "6", "--quick"])]


def test_every_quoted_module_exists():
    missing = sorted({c.module for c in COMMANDS if importlib.util.find_spec(c.module) is None})
    assert not missing, missing
