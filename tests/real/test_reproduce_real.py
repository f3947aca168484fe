"""`harness reproduce` on CI's reduced matrix: the benchmark suite on two real kernels, statistics,
plots and the report, through the same path as the COW PTE reproduction; the run exported as a
KCIDB report, and the report opened in headless Chromium."""
import contextlib
import io
import json
import re
import tomllib

import pytest
from kcidb_io import schema

from harness import cli, paths
from tests.real import browser

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """(run folder, stdout) of one `harness reproduce` for the tests of this module."""
    results = tmp_path_factory.mktemp("results")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("HARNESS_RESULTS", str(results))
        assert cli.main(["reproduce", "--experiment", "test-series-bench"]) == 0
    (run,) = results.iterdir()
    return run, out.getvalue()


def test_reproduce_reduced_matrix(reproduced):
    run, out = reproduced
    assert "coefficient of variation per metric" in out
    assert "fork-latency" in out and "CV=" in out
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["design"]["slots"] == ["stock#1", "patched#1", "patched#2", "stock#2", "stock#3", "patched#3"]
    for label in ("stock", "patched"):
        assert sorted(meta["kernels"][label]["boots"]) == ["1", "2", "3"]
        assert (run / label / "boot-3" / "console.log").exists()
        boots = {json.loads(r)["boot"] for r in (run / label / "fork-latency.jsonl").read_text().splitlines()}
        assert boots == {1, 2, 3}
    for label in ("stock", "patched"):
        for workload in ("fork-memory", "fork-latency", "fault-latency", "fork-server"):
            records = (run / label / f"{workload}.jsonl").read_text().splitlines()
            assert records, f"{label} {workload}"
            # the test series names the plain profile: nothing asked for, every fork a plain one
            recs = [json.loads(r) for r in records]
            assert not any(r["feature_requested"] for r in recs)
            # the records with the fork's evidence (every workload's held fork) are judged: off
            assert {r["feature_state"] for r in recs if "feature_state" in r} == {"off"}
    md = (run / "report.md").read_text()
    for section in ("fork-latency", "fault-latency", "fork-server", "fork-memory", "Claims"):
        assert section in md
    assert "COW PTE fork" not in md           # nothing here was COW PTE: never reported as such
    assert "| 3/3 (3 rounds) " in md and "boots being the units of replication" in md
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert sorted(p.name for p in (run / "plots").glob("*.png"))


ALPHA, PRACTICAL = 0.05, 0.02        # the design's: q below 5% and a change of 2% (or the manifest's)
TIME, SIZE = {"ns", "µs", "us", "ms", "s"}, {"B", "kB", "KiB", "MiB", "GiB", "pages"}


def comparison_rows(md):
    """Every row of the report's "Comparisons against" tables, as {column: cell, "workload": ...}."""
    workload, header, in_table = None, None, False
    for line in md.splitlines():
        if line.startswith("## Workload: "):
            workload = line.split(": ", 1)[1].strip()
        if line.startswith("#"):
            in_table, header = line.startswith("### Comparisons against"), None
        elif in_table and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set(line) <= set("|:- "):
                yield {"workload": workload, **dict(zip(header, cells))}


def allowed_verdicts(row):
    """The verdicts a row's own printed evidence allows: q < 0.05 and a change of at least the
    practical threshold, the direction; q < 0.05 and less, "no practical difference"; else "no
    significant difference" and the largest change its interval allows. Where a rounded figure
    sits on a boundary, both sides are allowed."""
    ratio, lo, hi = map(float, re.fullmatch(r"(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]",
                                            row["ratio [95% CI]"]).groups())
    q, change = float(row["q"]), ratio - 1
    manifest = tomllib.loads((paths.ROOT / "workloads" / row["workload"] / "manifest.toml").read_text())
    threshold = manifest.get("practical", {}).get(row["metric"], PRACTICAL)
    unit = row["baseline median"].split()[-1]
    up, down = ("slower", "faster") if unit in TIME else ("larger", "smaller") if unit in SIZE else ("higher", "lower")
    significant = {True, False} if abs(q - ALPHA) <= 0.005 else {q < ALPHA}
    big = {True, False} if abs(abs(change) - threshold) <= 0.0005 else {abs(change) >= threshold}
    allowed = set()
    if True in significant:
        allowed |= {up if change > 0 else down} if True in big else set()
        allowed |= {f"no practical difference ({change:+.1%} < {threshold:.0%})"} if False in big else set()
    if False in significant:
        allowed.add(f"no significant difference (none > {max(abs(lo - 1), abs(hi - 1)):.1%})")
    return allowed


def check_verdicts(md):
    """Every comparison's verdict is the one its own evidence allows; identical counts read as no
    difference with a zero-width interval."""
    rows = list(comparison_rows(md))
    family = int(re.search(r"over the (\d+) comparisons of this report", md).group(1))
    assert len(rows) == family
    wrong = [(r["workload"], r["candidate"], r["metric"], r["ratio [95% CI]"], r["q"], r["verdict"])
             for r in rows if re.sub(r" \(noisy: CV \d+%\)$", "", r["verdict"]) not in allowed_verdicts(r)]
    assert wrong == []
    # 32 MiB written page by page after the fork: 8192 COW faults on every kernel, in every boot
    # (one comparison: the test series' plain profile has one condition, patched vs stock)
    faults = [r for r in rows if r["metric"] == "minor_faults"]
    assert len(faults) == 1 and all(r["baseline median"] == r["candidate median"] == "8,192 faults"
                                    and r["ratio [95% CI]"] == "1.000 [1.000, 1.000]"
                                    and r["verdict"] == "no significant difference (none > 0.0%)" for r in faults)


def test_every_verdict_is_the_one_its_evidence_allows(reproduced):
    """The test series touches no mm code: whatever the verdicts, each must follow from its own
    q, ratio and interval by the design's rule (the report's words, not any word)."""
    run, _ = reproduced
    check_verdicts((run / "report.md").read_text())


def test_the_run_exported_for_kcidb_validates_against_kcidb_io(reproduced, tmp_path, capsys):
    run, _ = reproduced
    assert cli.main(["export", "--format", "kcidb", str(run), "--origin", "harness_ci"]) == 0
    doc = json.loads(capsys.readouterr().out)
    schema.LATEST.validate(doc)
    meta = json.loads((run / "metadata.json").read_text())
    patched = next(c for c in doc["checkouts"] if c["misc"].get("series"))
    assert len(patched["misc"]["series"]["patches"]) == 2
    builds = {b["misc"]["labels"][0]: b for b in doc["builds"]}
    assert set(builds) == {"stock", "patched"} and all(b["status"] == "PASS" for b in builds.values())
    assert builds["patched"]["checkout_id"] == patched["id"]
    assert builds["stock"]["id"] == f"harness_ci:build:{meta['kernels']['stock']['build_key']}"
    assert builds["stock"]["compiler"].startswith("gcc") and builds["stock"]["log_url"].startswith("file://")
    boots = [t for t in doc["tests"] if t["path"] == "boot"]
    assert len(boots) == 6 and all(t["status"] == "PASS" and t["duration"] > 0 for t in boots)
    tasks = {t["path"] for t in doc["tests"] if t["path"].count(".") == 1}
    assert {"harness.fork-memory", "harness.fork-latency", "harness.fault-latency",
            "harness.fork-server"} <= tasks
    figures = [t for t in doc["tests"] if t["status"] == "DONE"]
    assert figures and all(t["number"]["value"] == t["number"]["value"] for t in figures)
    assert any("verdict" in t["misc"] for t in figures if t["build_id"] == builds["patched"]["id"])


def test_the_report_renders_in_headless_chromium(reproduced, tmp_path):
    run, _ = reproduced
    page = run / "report.html"
    assert browser.outside_references(page) == []          # one file: opens from a CI artifact
    shot = browser.screenshot(page, tmp_path / "report.png")
    from PIL import Image
    with Image.open(shot) as img:
        assert img.size == (1280, 3000)
        assert len(img.convert("RGB").getcolors(1 << 20) or []) > 50     # a page, not a blank
    found = browser.images(page, tmp_path)
    plots = sorted(p.stem for p in (run / "plots").glob("*.png"))
    assert sorted(i["alt"] for i in found) == plots and len(found) >= 3
    broken = [i for i in found if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert broken == [] and all(i["scheme"] == "data" and i["shown"] > 0 for i in found)
