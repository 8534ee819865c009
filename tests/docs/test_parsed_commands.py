"""Every `python -m src.report`, `src.predict` and `src.bench` line the README and docs/
quote still goes through its command's parser: a renamed flag, benchmark or module fails
here, not in the reader's shell. `src.bench` lines go through the benchmark's parser in one
subprocess, since two benchmarks import TensorFlow."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from helpers.markdown import Command, ids, of
from helpers.paths import PROJECT_ROOT


def parse(function, command: Command):
    try:
        return function(command.args)
    except SystemExit as stop:
        raise AssertionError(f"{command}: refused by its parser (exit {stop.code})") from None


@pytest.mark.parametrize("command", of("src.report"), ids=ids(of("src.report")))
def test_report_commands_parse(command):
    from mlflow.utils.search_utils import SearchUtils

    from src.analysis import pairing
    from src.analysis.report import parse_args

    args = parse(parse_args, command)
    for side in args.compare or []:  # each side: run ids, or a filter MLflow's parser accepts
        ids_given = [part.strip() for part in side.split(",")]
        if not all(pairing.RUN_ID.fullmatch(i) for i in ids_given):
            try:
                SearchUtils.parse_search_filter(side)
            except Exception as err:  # noqa: BLE001 - MLflow raises several kinds
                raise AssertionError(f"{command}: {side!r} is not an MLflow filter: {err}") from None


@pytest.mark.parametrize("command", of("src.predict"), ids=ids(of("src.predict")))
def test_predict_commands_parse(command):
    from src.predict import parse_args

    parse(parse_args, command)


# ---------------------------------------------------------------- src.bench: each benchmark's parser

# Runs src.bench's dispatch with argparse stopped right after parsing: the benchmark's
# main builds its parser and parses, and nothing after that runs.
BENCH_PARSER = r"""
import argparse, json, sys
from src import bench

class Parsed(BaseException):
    pass

original_parse_args, original_parse_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
inside = []

def parse_args(self, *args, **kwargs):
    inside.append(1)
    try:
        original_parse_args(self, *args, **kwargs)
    finally:
        inside.pop()
    raise Parsed()

def parse_known_args(self, *args, **kwargs):
    result = original_parse_known(self, *args, **kwargs)
    if not inside:
        raise Parsed()
    return result

argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = parse_args, parse_known_args
results = []
for argv in json.loads(sys.argv[1]):
    try:
        code = bench.main(argv)
        results.append(f"ran to the end without parsing (exit {code})")
    except Parsed:
        results.append("")
    except SystemExit as stop:
        results.append(f"refused by its parser (exit {stop.code})")
print(json.dumps(results))
"""


def test_bench_commands_parse():
    commands = of("src.bench")
    assert commands
    argvs = [[a for a in c.args if a not in ("-h", "--help")] for c in commands]
    done = subprocess.run([sys.executable, "-c", BENCH_PARSER, json.dumps(argvs)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = [f"{c}: {r}" for c, r in zip(commands, results) if r]
    assert not wrong, "\n".join(wrong) + "\n" + done.stderr[-2000:]


def test_a_renamed_flag_fails_the_parse():
    """The check can fail: a flag the parser does not know is refused."""
    from src.analysis.report import parse_args

    with pytest.raises(AssertionError, match="refused by its parser"):
        parse(parse_args, Command("here", "src.report", ["--studdy", "card_study"]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--known")
    with pytest.raises(SystemExit):
        parser.parse_args(["--unknown", "1"])
