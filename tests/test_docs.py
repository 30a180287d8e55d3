"""The documentation's own checks that `make docs` (mkdocs build --strict) does not make:
every python code block of README.md and docs/*.md compiles, every `kseg` command their
bash blocks show names a real verb and real options, README.md stays short and its
relative links lead to files. Fast: no Keras is imported and nothing is run."""

import re
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)")
README_MAX_BYTES = 10_000


def code_blocks(text):
    """`[(line, language, code)]` of every fenced block in Markdown `text` (line is 1-based)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, fence, body = i + 1, m["fence"], []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        blocks.append((start, m["lang"].lower(), textwrap.dedent("\n".join(body))))
        i += 1  # the closing fence
    return blocks


def python_blocks():
    for page in PAGES:
        for line, lang, code in code_blocks(page.read_text()):
            if lang in ("python", "py"):
                yield pytest.param(page, line, code, id=f"{page.relative_to(REPO)}:{line}")


def test_the_fence_reader_finds_blocks_and_their_lines():
    text = "# t\n\n```python\nx = 1\n```\n\n- item\n\n  ```bash\n  ls\n  ```\n````python\n```\n````\n"
    assert code_blocks(text) == [(3, "python", "x = 1"), (9, "bash", "ls"), (12, "python", "```")]


@pytest.mark.parametrize(("page", "line", "code"), list(python_blocks()))
def test_python_blocks_compile(page, line, code):
    try:
        compile(code, f"{page.name}:{line}", "exec")
    except SyntaxError as exc:
        pytest.fail(f"{page.relative_to(REPO)}: the python block at line {line} does not compile: {exc}")


def test_a_broken_block_is_caught():
    [(_, _, code)] = code_blocks("```python\nprint(\n```\n")
    with pytest.raises(SyntaxError):
        compile(code, "x", "exec")


def test_readme_reads_in_five_minutes():
    size = len((REPO / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move details to a guide in docs/"


def test_readme_links_lead_to_files():
    """README.md is not part of the mkdocs build, so its links are checked here."""
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    missing = [t for t in targets if not re.match(r"[a-z]+:", t)
               and not (REPO / t.split("#")[0]).exists()]
    assert targets and missing == []


KSEG_LINE = re.compile(r"^\s*(?:[A-Z_][A-Z0-9_]*=\S*\s+)*kseg\s")  # env assignments, then kseg


def shown_commands():
    """`(page, line, argv)` for every `kseg ...` line of the bash blocks of README.md and docs/."""
    import shlex

    for page in PAGES:
        for start, lang, code in code_blocks(page.read_text()):
            if lang not in ("bash", "sh", "console"):
                continue
            lines = code.splitlines()
            for i, text in enumerate(lines):
                if not KSEG_LINE.match(text):
                    continue
                j = i
                while text.endswith("\\") and j + 1 < len(lines):  # a continued command
                    j += 1
                    text = text[:-1] + " " + lines[j]
                argv = shlex.split(text, comments=True)
                argv = argv[argv.index("kseg") + 1:]
                yield pytest.param(argv, id=f"{page.relative_to(REPO)}:{start + i + 1}")


@pytest.mark.parametrize("argv", list(shown_commands()))
def test_shown_commands_and_their_options_exist(argv):
    """Every `kseg VERB --option` a page shows is a real verb and option (click, no Keras)."""
    import click

    from kseg.cli.main import main

    command, ctx, names = main, click.Context(main), ["kseg"]
    while isinstance(command, click.Group) and argv and not argv[0].startswith("-"):
        name, argv = argv[0], argv[1:]
        command = command.get_command(ctx, name)
        assert command is not None, f"`{' '.join(names)} {name}`: no such command"
        names.append(name)
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [a.split("=")[0] for a in argv if a.startswith("--") and a.split("=")[0] not in options]
    assert unknown == [], f"`{' '.join(names)}` has no option {unknown}"


def test_a_wrong_verb_or_option_is_caught():
    with pytest.raises(AssertionError, match="no option"):
        test_shown_commands_and_their_options_exist(["fit", "unet", "--epochz", "3"])
    with pytest.raises(AssertionError, match="no such command"):
        test_shown_commands_and_their_options_exist(["data", "chek"])
