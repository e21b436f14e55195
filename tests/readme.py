"""Read the README's shell commands, so tests run what it tells users to run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def section(title: str) -> str:
    """Return the text of the README section `## title`, up to the next `## ` heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def shell_blocks(title: str) -> list[list[str]]:
    """Return each ```sh block of a section as its command lines, in order.

    Continued lines are joined; blank lines and lines that are only a comment are left out.
    """
    blocks = []
    for body in re.findall(r"```sh\n(.*?)```", section(title), flags=re.DOTALL):
        joined = body.replace("\\\n", " ")
        lines = [line.strip() for line in joined.splitlines()]
        blocks.append([line for line in lines if line and not line.startswith("#")])
    return blocks


def block_with(title: str, text: str) -> list[str]:
    """Return the one shell block of a section that has a line containing `text`."""
    found = [block for block in shell_blocks(title) if any(text in line for line in block)]
    assert len(found) == 1, f"README section {title!r} has {len(found)} blocks with {text!r}"
    return found[0]
