"""The README and docs/ as the documentation tests (tests/docs/) read them: code blocks and
prose, links and headings, and every `python -m src.<module> ...` command line they quote.

A command is read from a shell code block (env-var prefixes, `exec`, `.venv/bin/`,
continuation lines, comments and `&&` chains handled; a bash array in the same
block is expanded) or from an inline code span with arguments. Nothing is trained,
read or written.
"""
from __future__ import annotations

import contextlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from helpers.paths import PROJECT_ROOT

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
