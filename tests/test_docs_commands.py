"""Every ``omnict ...`` command line in README.md, docs/*.md and the commands' ``--help`` parses, and every
repository path it names exists.

A command line is a line of a code block, or an inline code span, that
starts with ``omnict ``. It is parsed by the subcommand's own click parser
(``make_context`` with ``resilient_parsing``: nothing runs, no file is
opened): an option the command does not have, an option without its value,
or an argument too many fails here. A token that starts with a top-level
folder of the repository (``examples/``, ``models/``, ``docs/``, ...) must
name a path that exists, unless it is what the command writes (``--out``).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from omnict_cli.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REPOSITORY_FOLDERS = {path.name for path in REPO.iterdir() if path.is_dir() and not path.name.startswith(".")}
REPOSITORY_PATHS = sorted(
    {path.relative_to(REPO).as_posix() for folder in REPOSITORY_FOLDERS for path in (REPO / folder).rglob("*")}
)
"""Every file and folder under those folders: a doc naming ``phantoms/qa.jsonl`` meant ``examples/phantoms/qa.jsonl``."""
OUTPUT_OPTIONS = {"--out", "--json", "--export-challenge", "--per-study", "--out-dir"}
"""Options whose value is a file or folder the command writes, so it need not exist yet."""


def command_lines(text: str) -> list[str]:
    """``omnict ...`` lines of fenced code blocks (continuations joined) and inline code spans."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\s*\\\n\s*", " ", block).splitlines():
            if line.strip().startswith("omnict "):
                lines.append(line.strip())
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    lines.extend(span.strip() for span in re.findall(r"`(omnict [^`]+)`", prose))
    return lines


def _help_texts(group: click.Group = main, prefix: str = "omnict"):
    """(``omnict X --help``, its help text) for every command and subcommand."""
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        yield f"{prefix} {name} --help", command.help or ""
        if isinstance(command, click.Group):
            yield from _help_texts(command, f"{prefix} {name}")


def _cases():
    for document in DOCUMENTS:
        for line in command_lines(document.read_text(encoding="utf-8")):
            yield pytest.param(document.relative_to(REPO).as_posix(), line, id=f"{document.name}: {line[:70]}")
    for where, text in _help_texts():
        for line in re.sub(r"\s*\\\n\s*", " ", text).splitlines():
            if line.strip().startswith("omnict "):
                yield pytest.param(where, line.strip(), id=f"{where}: {line.strip()[:70]}")


def _synopsis_words(line: str) -> list[str]:
    """Shell words of a command line; a synopsis' ``[--opt V]`` brackets and ``a|b`` choices read as one usage."""
    words = shlex.split(re.split(r" [>|] ", line, maxsplit=1)[0], comments=True)  # no redirect or pipe
    plain = []
    for word in words:
        word = word.strip("[]")
        if "|" in word and not word.startswith(("-", "/")):
            word = word.split("|", 1)[0]
        if word and word != "...":
            plain.append(word)
    return plain


def _parse(words: list[str]) -> dict:
    """The options and arguments the (sub)command's own parser reads from the words; nothing runs.

    The parser alone, not ``make_context``: no callback, type conversion or
    file check runs (the paths in docs are examples), but an unknown option,
    an option without its value and an argument too many are errors.
    """
    command, name, args = main, "omnict", words[1:]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        sub = command.get_command(click.Context(command), args[0])
        assert sub is not None, f"'{args[0]}' is not an omnict command"
        command, name, args = sub, args[0], args[1:]
    context = click.Context(command, info_name=name)
    options, extra, _ = command.make_parser(context).parse_args(args=list(args))
    if extra and not context.allow_extra_args:
        raise click.UsageError(f"'{name}' takes no argument {extra}")
    return options


def _takes_a_value(words: list[str]) -> bool:
    """Whether the last word is an option of the command the words call that takes a value."""
    command, args = main, words[1:]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        command, args = command.get_command(click.Context(command), args[0]) or command, args[1:]
    return any(
        words[-1] in param.opts and not param.is_flag for param in command.params if isinstance(param, click.Option)
    )


@pytest.mark.parametrize("document, line", list(_cases()))
def test_command_line_parses_and_names_existing_paths(document, line):
    words = _synopsis_words(line)
    inline = document.endswith(".md") and f"`{line}`" in (REPO / document).read_text(encoding="utf-8")
    if words[-1].startswith("--") and inline:
        words = words[:-1] + [words[-1], "VALUE"] if _takes_a_value(words) else words  # prose naming an option
    try:
        _parse(words)
    except click.UsageError as error:
        pytest.fail(f"{document}: {line!r} does not parse: {error.format_message()}")
    written = {value for option, value in zip(words, words[1:]) if option in OUTPUT_OPTIONS}
    for word in words[1:]:
        word = word.split("=", 1)[-1].rstrip("/")
        assert not word.startswith("../"), f"{document}: {line!r} names {word}, outside the repository a user has"
        if word in written or "/" not in word or word.startswith(("-", "/", "~", "$", ".")):
            continue
        if word.split("/", 1)[0] in REPOSITORY_FOLDERS:
            assert (REPO / word).exists(), f"{document}: {line!r} names {word}, which is not in the repository"
        meant = [path for path in REPOSITORY_PATHS if path.endswith("/" + word)]
        assert not meant, f"{document}: {line!r} names {word}; from the repository root it is {meant[0]}"


def test_the_check_itself_catches_an_unknown_option_and_a_missing_path():
    with pytest.raises(click.UsageError, match="No such option"):
        _parse(_synopsis_words("omnict report examples --outt findings.jsonl"))
    with pytest.raises(click.UsageError, match="takes no argument"):
        _parse(_synopsis_words("omnict ask --batch phantoms/qa.jsonl extra words here"))
    assert "omnict ask --batch examples/phantoms/qa.jsonl --out a.jsonl" in command_lines(
        "```bash\nomnict ask --batch examples/phantoms/qa.jsonl \\\n    --out a.jsonl\n```"
    )
