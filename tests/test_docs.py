"""The documentation's own checks that `make docs` (mkdocs build --strict) does not make:
every python code block of README.md and docs/*.md compiles, README.md stays short and
its relative links lead to files. Fast: nothing is imported or run."""

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
