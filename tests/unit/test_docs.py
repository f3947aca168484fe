"""The README stays a guide and docs/ stays one manual: the README is at most 200 lines, every
docs/*.md page is linked from the README or docs/index.md, every relative link in them resolves (the
file, and the heading an anchor names), and docs/commands.md names every subcommand."""
import re

import pytest

from harness import paths

README = paths.ROOT / "README.md"
DOCS = paths.ROOT / "docs"
MAX_README_LINES = 200
PAGES = sorted(DOCS.glob("*.md"))
# Pages another part of the work adds (the feature profile's page): a link to one may point nowhere
# only while the page does not exist yet; once it exists, its links are checked like any other.
ANNOUNCED = set()

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def text_outside_code(path):
    return FENCE.sub("", path.read_text())


def links(path):
    """The relative links of a Markdown file, as (target path, anchor or None)."""
    found = []
    for target in LINK.findall(text_outside_code(path)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):     # https:, mailto:, ...
            continue
        file, _, anchor = target.partition("#")
        found.append(((path.parent / file).resolve() if file else path.resolve(), anchor or None))
    return found


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"`|\*\*", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    seen, found = {}, set()
    for heading in re.findall(r"^#{1,6} (.+)$", text_outside_code(path), re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def test_the_readme_is_a_guide():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; the manual is docs/"


def test_every_docs_page_is_linked_from_the_readme_or_the_index():
    linked = {target for source in (README, DOCS / "index.md") for target, _ in links(source)}
    unlinked = [p.name for p in PAGES if p.resolve() not in linked]
    assert unlinked == []


@pytest.mark.parametrize("path", [README] + PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    broken = []
    for target, anchor in links(path):
        if not target.exists():
            if target not in {p.resolve() for p in ANNOUNCED}:
                broken.append(f"{target.relative_to(paths.ROOT)} does not exist")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{target.relative_to(paths.ROOT)} has no heading #{anchor}")
    assert broken == []


def test_the_link_check_finds_a_broken_link_and_a_wrong_anchor(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Title\n\n## Which patch costs what: `harness attribute`\n")
    page.write_text("[a](other.md#which-patch-costs-what-harness-attribute) [b](missing.md) "
                    "[c](other.md#nowhere) [d](https://example.org/x.md)\n```\n[e](fenced.md)\n```\n")
    found = links(page)
    assert [(t.name, a) for t, a in found] == [
        ("other.md", "which-patch-costs-what-harness-attribute"), ("missing.md", None),
        ("other.md", "nowhere")]
    assert "which-patch-costs-what-harness-attribute" in anchors(tmp_path / "other.md")
    assert "nowhere" not in anchors(tmp_path / "other.md")


def test_commands_page_names_every_subcommand():
    from harness.cli.parser import parser
    sub = next(a for a in parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    text = (DOCS / "commands.md").read_text()
    assert [name for name in sub.choices if f"`harness {name}" not in text] == []


def test_the_readme_keeps_the_two_set_up_commands_that_ci_runs():
    """The main job and the tests, as a newcomer types them on a fresh Debian 12; .ci/run runs the
    second one (tox after installing tox and chromium) and ends its log with its own duration."""
    readme = README.read_text()
    assert "apt-get update && apt-get install -y tox && tox -e run\n" in readme
    assert "apt-get update && apt-get install -y tox chromium && tox\n" in readme
    ci = (paths.ROOT / ".ci" / "run").read_text()
    assert re.search(r"apt-get install -y -q tox .*chromium", ci)
    assert ci.rstrip().splitlines()[-1] == "tox"
    assert re.search(r"trap '.*ci: exit code .* after .* min .* s.*' EXIT", ci)


def test_every_finding_says_how_to_run_it_again():
    """docs/findings.md: each finding (a `## ` section) names the harness command that re-runs it,
    and every run id given anywhere in the README is one the findings page carries."""
    text = (DOCS / "findings.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert sections
    assert [s.splitlines()[0] for s in sections if not re.search(r"Re-run: `harness ", s)] == []
    run_id = re.compile(r"\b\d{8}-\d{6}-[0-9a-f]{6}\b")
    assert set(run_id.findall(README.read_text())) - set(run_id.findall(text)) == set()
