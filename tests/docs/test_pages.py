"""The README and docs/ pages: they exist, the README fits one screen, and every relative
link resolves, to a file and to a heading in it."""
from __future__ import annotations

from helpers.markdown import LINK, anchors, blocks_and_prose, prose_without_code_spans, relative_links, slug
from helpers.paths import PROJECT_ROOT


def test_the_docs_exist_and_the_readme_is_one_screen():
    lines = (PROJECT_ROOT / "README.md").read_text().count("\n")
    assert lines <= 80, f"README.md has {lines} lines: move detail to docs/"  # a screen, with its code blocks
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
