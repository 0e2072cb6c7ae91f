"""The documentation stands alone: every relative link and image in README.md and docs/*.md points at a
file (and heading) that exists, the Quick start's commands are Makefile targets, and nothing cites a
reference file outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = _CODE.sub(lambda m: m.group(0).strip("`"), heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def broken_links(page: Path) -> list[str]:
    bad = []
    for target in _LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target} (no such heading)")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page):
    assert broken_links(page) == [], f"{page.relative_to(ROOT)} links to what does not exist"


def test_the_link_check_sees_a_broken_link_image_and_anchor(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-heading) [gone](missing.md) ![img](nothing.png) [x](there.md#nope)\n"
                    "`[code](not-a-link.md)` [web](https://example.org/x.md)\n"
                    "```\n[fenced](not-a-link-either.md)\n```\n", encoding="utf-8")
    assert broken_links(page) == ["missing.md (no such file)", "nothing.png (no such file)",
                                  "there.md#nope (no such heading)"]


def test_every_doc_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in _LINK.findall(prose((ROOT / "README.md").read_text()))}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_the_quick_start_commands_are_makefile_targets():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for command in commands:
        target = command.split()[1]
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe, f"the Makefile has no recipe for '{target}'"


def test_nothing_cites_a_reference_file_outside_the_repository():
    name = "REFERENCE" + ".md"
    files = [*PAGES, ROOT / "experiments.yaml", *ROOT.glob("fqvae_cli/**/*.py"), *ROOT.glob("tests/**/*.py"),
             *ROOT.glob("benchmarks/*")]
    citing = [str(f.relative_to(ROOT)) for f in files
              if f.is_file() and f.name != Path(__file__).name and name in f.read_text(encoding="utf-8")]
    assert citing == []
