import json

import pytest

from harness.kernel import series, sources
from harness.errors import UserError
from tests.conftest import git, make_fake_tree

LINES = [f"line {i}" for i in range(1, 31)]


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")


def base_tree(path):
    make_fake_tree(path)
    write_lines(path / "mm" / "a.c", LINES)
    write_lines(path / "mm" / "b.c", LINES)
    return path


def change(lines, old, new):
    return [new if line == old else line for line in lines]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A base tree and a v4 series of three patches made on it with git format-patch."""
    tmp = tmp_path_factory.mktemp("series")
    repo = base_tree(tmp / "work")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD")
    write_lines(repo / "mm" / "a.c", change(LINES, "line 15", "line fifteen"))
    git(repo, "commit", "-qam", "mm: change a")
    write_lines(repo / "mm" / "b.c", change(LINES, "line 15", "line FIFTEEN"))
    git(repo, "commit", "-qam", "mm: change b")
    (repo / "init" / "main.c").write_text("int main_init = 1;\n")
    git(repo, "commit", "-qam", "init: change main")

    folder = tmp / "patches"
    git(repo, "format-patch", "-q", "--cover-letter", "--thread", "-v4", "-o", str(folder), f"{base}..HEAD")
    cover = next(folder.glob("*0000-cover-letter.patch"))
    cover.write_text(cover.read_text().replace("*** SUBJECT HERE ***", "Change a, b and main")
                     .replace("*** BLURB HERE ***", "Some words.\n\nThis series is based on v6.1-rc7.\n"))
    files = sorted(folder.glob("*.patch"))
    mbox = tmp / "series.mbox"
    mbox.write_text("".join(f.read_text() for f in files))
    shuffled = tmp / "shuffled.mbox"
    shuffled.write_text("".join(f.read_text() for f in [files[2], files[0], files[3], files[1]]))
    # plain `git format-patch` output: no Message-Ids, so no threading for b4 to follow
    plain = tmp / "plain"
    git(repo, "format-patch", "-q", "-v4", "-o", str(plain), f"{base}..HEAD")
    plain_mbox = tmp / "plain.mbox"
    plain_mbox.write_text("".join(f.read_text() for f in sorted(plain.glob("*.patch"), reverse=True)))
    return {"tmp": tmp, "folder": folder, "mbox": mbox, "shuffled": shuffled, "plain": plain_mbox}


def test_folder_and_mbox_give_the_same_series(made):
    from_folder = series.load(str(made["folder"]))
    from_mbox = series.load(str(made["mbox"]))
    assert [p.title for p in from_folder.patches] == ["mm: change a", "mm: change b", "init: change main"]
    assert series.patch_ids(from_folder) == series.patch_ids(from_mbox)
    assert len(set(series.patch_ids(from_folder))) == 3
    assert from_folder.id == from_mbox.id
    for s in (from_folder, from_mbox):
        assert (s.version, s.base, s.title) == (4, "v6.1-rc7", "Change a, b and main")
        assert s.message_id and s.message_id == from_folder.message_id
        assert [p.index for p in s.patches] == [1, 2, 3]
        assert s.patches[0].author == "t <t@t>"
    json.dumps(from_mbox.as_dict())
    assert from_mbox.as_dict()["patches"][1]["id"] == from_mbox.patches[1].id


@pytest.mark.parametrize("name", ["shuffled", "plain"])
def test_mbox_out_of_order_is_sorted(made, name):
    expected = series.load(str(made["folder"]))
    got = series.load(str(made[name]))
    assert series.patch_ids(got) == series.patch_ids(expected)
    assert [p.title for p in got.patches] == [p.title for p in expected.patches]
    assert got.version == 4


def test_base_text():
    assert series._base("This patch is based on v6.2-rc7.\n") == "v6.2-rc7"
    assert series._base('based on the paper "On demand"\nand based on\nv6.1.\n') == "v6.1"
    assert series._base("base-commit: 0123456789abcdef0123456789abcdef01234567\n").startswith("0123")
    assert series._base("nothing here\n") is None


def source_from(tmp_path, edit=None):
    tree = base_tree(tmp_path / "linux")
    if edit:
        edit(tree)
    return sources.resolve(str(tree))


def test_apply_and_cache(cache_dir, made, tmp_path, monkeypatch):
    source = source_from(tmp_path)
    head, files_before = source.commit, (source.path / "mm" / "a.c").read_text()
    s = series.load(str(made["folder"]))
    tree, report = series.apply(s, source)
    assert report.ok and [r.status for r in report.results] == ["applied"] * 3
    assert "line fifteen" in (tree.path / "mm" / "a.c").read_text()
    assert (tree.path / "init" / "main.c").read_text() == "int main_init = 1;\n"
    assert tree.id == f"{source.id}+{s.id[:8]}" and tree.version == "6.1.7-test"
    assert tree.spec.endswith(" + " + str(made["folder"]))
    assert git(tree.path, "rev-parse", "HEAD") == tree.commit
    assert git(tree.path, "status", "--porcelain") == ""
    assert git(tree.path, "log", "--format=%s", "-3").splitlines() == ["init: change main", "mm: change b",
                                                                       "mm: change a"]
    # the source is untouched
    assert git(source.path, "rev-parse", "HEAD") == head
    assert git(source.path, "status", "--porcelain") == ""
    assert (source.path / "mm" / "a.c").read_text() == files_before
    # a second call (even from the mbox) reuses the tree without applying anything
    monkeypatch.setattr(series, "_apply_one", lambda *a: pytest.fail("re-applied"))
    again, report2 = series.apply(series.load(str(made["mbox"])), source)
    assert again.path == tree.path and again.commit == tree.commit
    assert [r.status for r in report2.results] == ["applied"] * 3
    assert "mm: change b" in report2.table()


def test_offset_and_fuzz_are_reported(cache_dir, made, tmp_path):
    def edit(tree):
        write_lines(tree / "mm" / "a.c", ["extra"] * 5 + LINES)             # patch 1: offset
        write_lines(tree / "mm" / "b.c", change(LINES, "line 12", "twelve"))  # patch 2: fuzz
    tree, report = series.apply(series.load(str(made["folder"])), source_from(tmp_path, edit))
    assert [r.status for r in report.results] == ["applied with offset", "applied with fuzz", "applied"]
    assert "mm/a.c" in report.results[0].detail and "offset 5 lines" in report.results[0].detail
    assert "mm/b.c" in report.results[1].detail and "fuzz" in report.results[1].detail
    assert "line fifteen" in (tree.path / "mm" / "a.c").read_text()
    assert "line FIFTEEN" in (tree.path / "mm" / "b.c").read_text()
    assert git(tree.path, "status", "--porcelain") == ""
    assert git(tree.path, "log", "-1", "--skip=1", "--format=%s") == "mm: change b"


def test_failed_patch_leaves_nothing_behind(cache_dir, made, tmp_path):
    def edit(tree):
        write_lines(tree / "mm" / "b.c", [f"other {i}" for i in range(30)])
    source = source_from(tmp_path, edit)
    with pytest.raises(UserError) as exc:
        series.apply(series.load(str(made["folder"])), source)
    message = str(exc.value)
    assert "patch 2/3 'mm: change b'" in message and "mm/b.c: hunk #1 FAILED" in message
    assert [r.status for r in exc.value.report.results] == ["applied", "failed", "not tried"]
    assert "not tried" in exc.value.log_tail
    assert [p.name for p in (cache_dir / "trees").iterdir()] == []
    assert len(git(source.path, "worktree", "list").splitlines()) == 1
    assert git(source.path, "status", "--porcelain") == ""


def test_message_id_offline_says_what_to_pass(cache_dir):
    assert series._message_id("<20230207035139.272707-1-a@b.c>") == "20230207035139.272707-1-a@b.c"
    with pytest.raises(UserError, match=r"lore.*--series PATH"):
        series.load("https://lore.kernel.org/r/20990101000000.1-1-nobody@example.invalid")


def test_b4_that_does_not_answer_in_time_is_one_error(cache_dir, monkeypatch):
    monkeypatch.setattr(series, "B4_TIMEOUT", 0.01)      # b4 cannot even start in 10 ms
    with pytest.raises(UserError, match=r"lore.*: timed out\); .*--series PATH"):
        series.load("<20990101000000.1-1-nobody@example.invalid>")


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        series.load(str(tmp_path / "nope.mbox"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no \\*.patch files"):
        series.load(str(tmp_path / "empty"))
