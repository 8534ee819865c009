"""The README and docs/ say what the code does: every relative link resolves, and
every `python -m src.<module> ...` command line they quote still parses.

A command is read from a shell code block (env-var prefixes, `exec`, `.venv/bin/`,
continuation lines, comments and `&&` chains handled; a bash array in the same
block is expanded) or from an inline code span with arguments. `src.run` lines
are composed with Hydra and validated as `src.run` does before it imports
TensorFlow; `src.report` and `src.predict` lines go through their parsers;
`src.bench` lines through the benchmark's parser, in one subprocess, since two
benchmarks import TensorFlow. Nothing is trained, read or written. A renamed
flag, config key, experiment, benchmark or module fails here, not in the reader's
shell.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from helpers import CONF_DIR, PROJECT_ROOT

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~)(.*)$")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
COMMAND = re.compile(r"(?:^|/)python3?$")
# Shell variables the docs use whose value a reader's shell computes (`$(scontrol ...)`, SLURM's
# environment): a sample each. A variable neither here nor assigned in its block fails the test.
SAMPLE_VARIABLES = {"CHIEF": "node001:47777", "SLURM_PROCID": "1", "SLURM_JOB_ID": "1234",
                    "SLURM_CPUS_PER_TASK": "4"}
SAMPLE_RUN_ID = "0123456789abcdef0123456789abcdef"


@dataclass
class Command:
    source: str  # file:line
    module: str  # "src.run"
    args: List[str]

    def __str__(self) -> str:
        return f"{self.source}: python -m {self.module} {shlex.join(self.args)}"


# ---------------------------------------------------------------- reading the Markdown


def blocks_and_prose(path: Path) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
    """([(first line, language, code)], [(line, prose line)]) of one Markdown file."""
    blocks, prose = [], []
    fence, language, start, code = None, "", 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = FENCE.match(line.strip())
        if fence is None and match:
            fence, language, start, code = match.group(1), match.group(2).strip().lower(), number + 1, []
        elif fence is not None and line.strip().startswith(fence):
            blocks.append((start, language, "\n".join(code)))
            fence = None
        elif fence is not None:
            code.append(line)
        else:
            prose.append((number, line))
    return blocks, prose


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Dict[str, int] = {}
    found = set()
    for _, line in blocks_and_prose(path)[1]:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def prose_without_code_spans(prose: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    for number, line in prose:
        yield number, re.sub(r"`[^`]*`", "", line)


def relative_links() -> Iterator[tuple[str, Path, str, str]]:
    """(source, document, target path, anchor) of every link that is not a URL."""
    for path in DOCS:
        for number, line in prose_without_code_spans(blocks_and_prose(path)[1]):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                target_path, _, anchor = target.partition("#")
                yield f"{path.relative_to(PROJECT_ROOT)}:{number}", path, target_path, anchor


# ---------------------------------------------------------------- finding the commands


def substitute(text: str, variables: Dict[str, str], arrays: Dict[str, str]) -> str:
    for name, items in arrays.items():
        text = re.sub(r'"?\$\{' + name + r'\[@\]\}"?', items, text)

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in variables:
            return variables[name]
        if name in SAMPLE_VARIABLES:
            return SAMPLE_VARIABLES[name]
        raise AssertionError(f"${name}: give it a value in its code block, or a sample in SAMPLE_VARIABLES")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def placeholders(text: str) -> str:
    """Usage syntax made concrete: `[--flag value]` -> `--flag value`, `<run id>` -> a run id,
    any other `<name>` -> `x`."""
    text = re.sub(r"\[(--[^\[\]]*)\]", r"\1", text)
    text = re.sub(r"<run[ _]id>", SAMPLE_RUN_ID, text)
    return re.sub(r"<[A-Za-z][A-Za-z_ ]*>", "x", text)


def split_line(text: str) -> List[List[str]]:
    """Shell words of one logical line, comments dropped, split at `&&`, `;` and `|`."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments: List[List[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|"):
            segments.append([])
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def command_in(words: List[str], source: str) -> Optional[Command]:
    """`[VAR=value ...] [exec] [path/]python -m src.X args...` -> Command."""
    for i, word in enumerate(words[:-2]):
        if COMMAND.search(word) and words[i + 1] == "-m" and words[i + 2].startswith("src."):
            args = [a for a in words[i + 3:] if a not in ("...", "…")]
            return Command(source, words[i + 2], args)
    return None


def block_commands(path: Path, start: int, code: str) -> Iterator[Command]:
    arrays = {name: " ".join(items.split())
              for name, items in re.findall(r"(?:local\s+)?(\w+)=\(([^)]*)\)", code, flags=re.S)}
    variables = {}
    for name, value in re.findall(r"^\s*(?:export\s+)?(\w+)=(\S.*)$", code, flags=re.M):
        if "$(" not in value and "(" not in value[:1]:
            with contextlib.suppress(ValueError):
                words = shlex.split(value, comments=True)
                if len(words) == 1:
                    variables[name] = words[0]
    lines = code.split("\n")
    number = 0
    while number < len(lines):
        first, text = number, lines[number]
        while text.endswith("\\") and number + 1 < len(lines):
            number += 1
            text = text[:-1] + " " + lines[number].strip()
        number += 1
        if "python" not in text or " src." not in text:
            continue
        words_text = placeholders(substitute(text, variables, arrays))
        for words in split_line(words_text):
            found = command_in(words, f"{path.relative_to(PROJECT_ROOT)}:{start + first}")
            if found:
                yield found


def inline_commands(path: Path, prose: list[tuple[int, str]]) -> Iterator[Command]:
    """Code spans in prose that hold a command with arguments (a bare `python -m src.run`
    names the command; only its module is checked)."""
    text = "\n".join(line for _, line in prose)
    numbers = [number for number, _ in prose]
    for match in re.finditer(r"`([^`]+)`", text):
        span = " ".join(match.group(1).split())
        if not re.match(r"^(\S*/)?python3? -m src\.", span):
            continue
        line = numbers[text.count("\n", 0, match.start())]
        for words in split_line(placeholders(span)):
            found = command_in(words, f"{path.relative_to(PROJECT_ROOT)}:{line}")
            if found and found.args:
                yield found


def documented_commands() -> List[Command]:
    commands = []
    for path in DOCS:
        blocks, prose = blocks_and_prose(path)
        for start, language, code in blocks:
            if language in SHELL_LANGUAGES:
                commands.extend(block_commands(path, start, code))
        commands.extend(inline_commands(path, prose))
    return commands


COMMANDS = documented_commands()


def of(module: str) -> List[Command]:
    """The module's commands, each distinct line once (named after where it first appears)."""
    seen, distinct = set(), []
    for command in COMMANDS:
        if command.module == module and tuple(command.args) not in seen:
            seen.add(tuple(command.args))
            distinct.append(command)
    return distinct


def ids(commands: List[Command]) -> List[str]:
    return [c.source for c in commands]


# ---------------------------------------------------------------- links


def test_the_docs_exist_and_the_readme_is_one_screen():
    lines = (PROJECT_ROOT / "README.md").read_text().count("\n")
    assert lines <= 200, f"README.md has {lines} lines: move detail to docs/"
    for page in ("tuning", "reports", "tracking", "clusters", "performance", "faults", "architecture", "testing"):
        assert (PROJECT_ROOT / "docs" / f"{page}.md").is_file(), page


def test_every_relative_link_resolves():
    broken = []
    for source, document, target, anchor in relative_links():
        resolved = (document.parent / target).resolve() if target else document
        if not resolved.exists():
            broken.append(f"{source}: {target} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{source}: {target}#{anchor}: no such heading in {resolved.name}")
    assert not broken, "\n".join(broken)


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[ok](page.md#top) [gone](missing.md) `[not a link](x.md)`\n"
                    "[bad anchor](#nowhere)\n")
    found = []
    for number, line in prose_without_code_spans(blocks_and_prose(page)[1]):
        found += [(number, t) for t in LINK.findall(line)]
    assert found == [(3, "page.md#top"), (3, "missing.md"), (4, "#nowhere")]
    assert anchors(page) == {"top"}
    assert slug("Comparing two configurations (`--compare`)") == "comparing-two-configurations---compare"
    assert slug("A study's workers on several machines") == "a-studys-workers-on-several-machines"


# ---------------------------------------------------------------- commands: what is found


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


# ---------------------------------------------------------------- src.run: Hydra composes, the schema validates


def sweep_points(overrides: List[str]) -> List[List[str]]:
    """A multirun's overrides as the jobs it would run (each sweep expanded)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for override, text in zip(parsed, overrides):
        if override.is_sweep_override():
            prefix = text[:len(text) - len(text.lstrip("+~"))]
            key = prefix + override.get_key_element().lstrip("+~")
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([text])
    return [list(point) for point in itertools.product(*choices)]


def launcher_missing(overrides: List[str]) -> Optional[str]:
    plugins = {"slurm": "hydra_plugins.hydra_submitit_launcher", "ray": "hydra_plugins.hydra_ray_launcher",
               "joblib": "hydra_plugins.hydra_joblib_launcher"}
    for override in overrides:
        name = override.partition("+launcher=")[2]
        if name in plugins and importlib.util.find_spec(plugins[name]) is None:
            return f"{plugins[name]} is not installed (the {name} extra)"
    return None


@pytest.mark.parametrize("command", of("src.run"), ids=ids(of("src.run")))
def test_run_commands_compose_and_validate(command):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from src.config import register, validate

    multirun = any(a in ("-m", "--multirun") for a in command.args)
    overrides = [a for a in command.args if a not in ("-m", "--multirun")]
    assert not [a for a in overrides if a.startswith("-")], f"{command}: an option src.run does not take"
    reason = launcher_missing(overrides)
    if reason:
        pytest.skip(reason)
    register()
    points = sweep_points(overrides)
    assert multirun or len(points) == 1, f"{command}: a sweep without -m"
    for point in points:
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            try:
                validate(compose(config_name="config", overrides=point))
            except Exception as err:  # noqa: BLE001 - say which documented line broke
                raise AssertionError(f"{command}\n  {type(err).__name__}: {err}") from err


# ---------------------------------------------------------------- src.report, src.predict: their parsers


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
