import json
import re
import subprocess
import sys

import numpy as np
import pytest

from harness.measure import activity
from harness import feature, paths, stored
from harness.analysis import drawer, plots, render, report, stats, units
from harness.errors import HarnessError, UserError
from tests.unit import runs

SIZES = (1, 16, 256)
REPS = 20
MANIFESTS = {
    "fork-latency": '[params]\nsizes = "1,16,256"\nreps = 20\n[metrics]\nfork_ns = "ns"\n',
    "fault-latency": '[params]\nmib = 64\n[metrics]\nmean_ns = "ns"\nmedian_ns = "ns"\n',
    "fork-memory": ('[params]\nmib = 1024\ncow_pte = 0\nrepeat = 1\nthp = "nohuge"\n[metrics]\n'
                    'fork_ns = "ns"\nparent_vmrss_kb = "kB"\nchild_vmrss_kb = "kB"\n'
                    'parent_vmpte_kb = "kB"\nchild_vmpte_kb = "kB"\npagetables_delta_kb = "kB"\n'),
    # fork-server has no manifest here: its unit comes from the field's suffix
}


def metadata(accel="tcg"):
    return {"accel": accel, "qemu": "QEMU 7.2", "harness_sha": "abc123",
            "command": "harness run --experiment fake", "host": {"cpu": "Fake CPU", "cpus": 2},
            "experiment": {"name": "fake"}}


KERNELS = {"stock": {"release": "6.1.0", "source": {"spec": "debian:linux-source-6.1"},
                     "patches": [], "config_cow_pte": "n", "status": "ok",
                     "boot_seconds": 2.5, "guest_clocksource": "tsc"},
           "patched": {"release": "6.1.0+", "source": {"spec": "6.1 + cow-pte"},
                       "patches": ["p1", "p2"], "config_cow_pte": "y",
                       "status": "ok", "boot_seconds": 2.6, "guest_clocksource": "tsc"}}


def memory_record(kernel, requested, rep):
    patched = kernel == "patched"
    rec = {"mib": 1024, "thp": "nohuge", "rep": rep, "fork_ns": 10_000_000 + rep * 1000,
           "parent_vmrss_kb": 1049688, "child_vmrss_kb": 1048688 if not requested else 8000,
           "parent_vmpte_kb": 2096, "child_vmpte_kb": 2096 if not (requested and patched) else 4,
           "pagetables_delta_kb": 2100 if not (requested and patched) else 8,
           "cow_pte_requested": requested, "config_cow_pte": "y" if patched else "n",
           "prctl_ret": 0 if patched else -1, "prctl_errno": None if patched else 22}
    return activity.label(stored.renamed(rec), feature.load("cow-pte"))   # as the reader gives it


def make_run(root, run_id, accel="tcg"):
    rng = np.random.default_rng(1)
    base = {s: s * 100_000 * rng.lognormal(0, 0.01, REPS) for s in SIZES}
    lat = {"stock": [], "patched": []}
    for s in SIZES:
        for kernel in ("stock", "patched"):
            lat[kernel] += [{"size_mib": s, "rep": -1, "warmup": True, "fork_ns": 1e12,
                             "cow_pte": "off"}]
            # the patched kernel's plain fork: the same values as stock, in another order
            values = base[s] if kernel == "stock" else base[s][::-1]
            lat[kernel] += [{"size_mib": s, "rep": i, "warmup": False, "fork_ns": float(v),
                             "cow_pte": "off"} for i, v in enumerate(values)]
        lat["patched"] += [{"size_mib": s, "rep": i, "warmup": False, "fork_ns": float(2 * v),
                            "cow_pte": "active"} for i, v in enumerate(base[s])]
        # requested but not shown active: must never count as a COW PTE fork
        lat["patched"] += [{"size_mib": s, "rep": i, "fork_ns": float(v / 2), "cow_pte": "inactive"}
                           for i, v in enumerate(base[s])]
    records = {}
    for kernel, recs in lat.items():
        records[(kernel, "fork-latency")] = recs
        records[(kernel, "fork-memory")] = [memory_record(kernel, req, i) for req in (False, True)
                                            for i in range(5)]
        records[(kernel, "fault-latency")] = [{"mib": 64, "pattern": p, "side": side, "round": r, "cow_pte": "off",
                      "mean_ns": 500 + 10 * r, "median_ns": 480 + 10 * r, "std_ns": 50}
                     for p in ("seq", "rand") for side in ("parent", "child") for r in range(10)]
        noise = rng.normal(1, 0.3, 10)    # CV about 30%: noisy
        records[(kernel, "fork-server")] = [{"heap_mib": 64, "round": r, "forks_per_s": 1000 * noise[r],
                                             "cow_pte": "off"} for r in range(10)]
    run = runs.build(root, run_id, KERNELS, records, **metadata(accel))
    (run / "stock" / "fork-latency.jsonl").open("a").write('{"size_mib": 1, "fork_ns"')  # torn line
    return run


CLAIMS = [
    {"workload": "fork-memory", "metric": "parent_vmpte_kb", "condition": "fork", "value": 2.0,
     "unit": "MiB", "params": {"mib": 1024}},
    {"workload": "fork-memory", "metric": "child_vmpte_kb", "condition": "cow-pte", "value": 2096,
     "unit": "kB", "params": {"mib": 1024}, "tolerance": 0.05},
    {"workload": "fork-latency", "metric": "fork_ns", "condition": "fork", "value": 25.6,
     "unit": "ms", "params": {"size_mib": 256}},
    {"workload": "fork-latency", "metric": "fork_ns", "condition": "cow-pte", "value": 51.2,
     "unit": "ms", "params": {"size_mib": 256}},
    {"workload": "fork-latency", "metric": "fork_ns", "condition": "cow-pte", "value": 2.0,
     "kind": "ratio", "params": {"size_mib": 16}},
]


@pytest.fixture(scope="module", autouse=True)
def manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("workloads")
    for name, text in MANIFESTS.items():
        (root / name).mkdir()
        (root / name / "manifest.toml").write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "WORKLOADS", root)
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("results"), "r1")


@pytest.fixture(scope="module")
def written(run):
    """The report, written once (plots are the slow part)."""
    return report.write([run], claims=CLAIMS, resamples=200)


def comparison(run):
    metas, df = stats.load_runs([run])
    return df, stats.compare(df, "fork-latency", resamples=300, metas=metas)


def test_load_run_keeps_warmups_but_statistics_drop_them(run):
    meta, df = stats.load_run(run)
    assert meta.run_id == "r1"
    assert {"kernel", "workload", "run_id", "condition"} <= set(df.columns)
    lat = df[df["workload"] == "fork-latency"]
    assert lat["warmup"].sum() == 6
    desc = stats.describe(df, "fork-latency")
    assert desc["n"].max() == REPS and desc["max"].max() < 1e12


def test_verdicts_ci_and_conditions(run):
    df, comp = comparison(run)
    assert stats.baseline([stats.load_run(run)[0]], df) == "stock: fork"
    assert set(df["condition"]) >= {"stock: fork", "patched: fork", "patched: COW PTE fork",
                                    "patched: COW PTE requested, inactive"}
    # inactive records never become a COW PTE condition, even though they are "faster"
    inactive = df[df["feature_state"] == "inactive"]
    assert (inactive["kind"] != feature.load("cow-pte").label("active")).all()
    assert len(comp) == 3 * len(SIZES)
    # one boot per kernel, real time: the ratios and intervals, and no direction word (the
    # boot-to-boot spread was not measured)
    for _, row in comp.iterrows():
        if row["candidate"] == "patched: COW PTE fork":
            assert str(row["verdict"]).startswith("not judged [1 boot]: ratio 2.000; ")
            assert row["ci_low"] > 1 and row["ratio"] == pytest.approx(2.0)
            assert row["p_value"] < 0.05 and row["effect"] == 1.0
        elif row["candidate"] == "patched: fork":
            assert str(row["verdict"]).startswith("not judged [1 boot]: ratio 1.000; ")
            assert row["ci_low"] <= 1 <= row["ci_high"]
        else:
            assert str(row["verdict"]).startswith("not judged [1 boot]: ratio 0.500; ")


def test_direction_words_follow_units():
    assert units.direction_words("ns") == ("slower", "faster")
    assert units.direction_words("kB") == ("larger", "smaller")
    assert units.direction_words("/s") == ("higher", "lower")
    small = stats.compare_samples([1, 2], [3, 4, 5], "ns")
    assert small["verdict"].direction == "not enough data"
    mem = stats.compare_samples([100] * 5, [10] * 5, "kB", resamples=200)
    assert mem["verdict"].direction == "smaller" and mem["verdict"].repetitions


def test_noisy_flag(run):
    metas, df = stats.load_runs([run])
    comp = stats.compare(df, "fork-server", resamples=200, metas=metas)
    assert len(comp) == 1 and comp.loc[0, "unit"] == "/s"
    assert re.search(r"\(noisy: CV \d+%\)$", str(comp.loc[0, "verdict"]))
    quiet = stats.compare(df, "fork-server", resamples=200, metas=metas, noisy_cv=5.0)
    assert "noisy" not in str(quiet.loc[0, "verdict"])


def test_mixed_accelerators_refused(tmp_path, run):
    other = make_run(tmp_path, "r2", accel="kvm")
    with pytest.raises(UserError, match="different accelerators"):
        stats.load_runs([run, other])
    with pytest.raises(UserError):
        report.write([run, other])
    same = make_run(tmp_path, "r3")
    metas, df = stats.load_runs([run, same])
    assert set(df["run_id"]) == {"r1", "r3"}


def test_plots_written(run, written, tmp_path):
    pngs = sorted((run / "plots").glob("*.png"))
    assert [p.stem for p in pngs] == ["fault-latency", "fork-latency", "fork-memory", "fork-server"]
    for path in pngs:
        assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 1000
    _, df = stats.load_run(run)
    assert plots.fork_latency(df[df["workload"] == "fork-memory"], tmp_path / "x.png") is None
    assert plots.write_all(df[df["workload"] == "nothing"], tmp_path) == {}


def test_plots_drawn_beside_the_statistics_are_the_same_report(run, written, tmp_path):
    """report draws its plots in a child process while it computes the statistics: the same
    report and images; an error in the child is one HarnessError, not a hang."""
    out = tmp_path / "beside"
    md, page = report.write([run], out_dir=out, claims=CLAIMS, resamples=200,
                            plots=drawer.Plots([run], out))
    assert md.read_text() == written[0].read_text()
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == sorted(
        p.name for p in (run / "plots").glob("*.png"))
    assert page.read_text().count("data:image/png") == 4
    broken = drawer.Plots([tmp_path / "no-such-run"], tmp_path / "x")
    with pytest.raises(HarnessError, match="plots: "):
        broken.wait()


def test_the_command_leaves_at_once_with_its_files_whole(run, tmp_path):
    """`harness report` as users start it (harness.cli.run, which leaves without the
    interpreter's teardown): exit 0, the paths printed, both files whole, every plot embedded."""
    out = tmp_path / "cmd"
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(run), "--out", str(out),
                           "--resamples", "200"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"report: {out / 'report.md'}" in proc.stdout + proc.stderr     # the paths: on stderr
    assert (out / "report.md").read_text().count("](plots/") == 4
    page = (out / "report.html").read_text()
    assert page.count("data:image/png") == 4 and page.endswith("</body></html>\n")


def test_report(run, written):
    md_path, html_path = written
    assert md_path == run / "report.md"
    md, page = md_path.read_text(), html_path.read_text()
    for section in ("# Report: r1", "## Kernels", "## Conditions", "## Workload: fork-latency",
                    "## Workload: fork-memory", "## Workload: fault-latency",
                    "## Workload: fork-server", "### Summary", "### Comparisons", "### Plot",
                    "## Claims", "WARNING: accelerator is TCG", "harness run --experiment fake",
                    "Fake CPU", "abc123", "debian:linux-source-6.1", "tsc"):
        assert section in md, section
    assert "![fork-latency](plots/fork-latency.png)" in md
    verdict = re.compile(r"\| (slower|faster|larger|smaller|higher|lower|no significant difference"
                         r"|no practical difference|not enough data|not judged)[^|]*\|$")
    lines = [ln for ln in md.splitlines() if verdict.search(ln.rstrip())]
    # one verdict per (group, condition against stock's plain fork, metric), counted from the
    # fake run's design: fork-latency 3 sizes x (patched fork, COW PTE fork, inactive) x fork_ns;
    # fault-latency 2 patterns x 2 sides x patched fork x (mean_ns, median_ns); fork-server
    # patched fork x forks_per_s; fork-memory (patched fork, COW PTE fork, stock's inactive) x
    # 6 metrics
    assert len(lines) == 3 * 3 * 1 + 2 * 2 * 1 * 2 + 1 + 3 * 6
    metas, df = stats.load_runs([run])
    assert page.count("src='data:image/png;base64,") == 4
    # claims: memory compared as measured; times under TCG only as a ratio
    table = report.check_claims(CLAIMS, df, metas)
    assert list(table["status"]) == ["reproduced", "not reproduced", "not comparable here",
                                     "not comparable here", "reproduced", "reproduced"]
    assert table.loc[5, "condition"] == "cow-pte / fork" and table.loc[5, "measured"] == "2.000"
    claims = md.split("## Claims")[1]
    assert claims.count("| reproduced") == 3 and claims.count("| not comparable here") == 2
    assert "4 kB" in claims


def test_claims_under_kvm_compare_absolute_times(tmp_path):
    run = make_run(tmp_path, "k1", accel="kvm")
    metas, df = stats.load_runs([run])
    table = report.check_claims(CLAIMS[2:4], df, metas)
    assert list(table["status"]) == ["reproduced", "reproduced"]
    assert "not comparable" not in render.markdown(report.header(metas), run)


def test_verdict_from_the_held_fork_covers_its_size():
    import pandas as pd

    def rec(kernel, size, rep, **evidence):
        return {"kernel": kernel, "workload": "fork-latency", "run_id": "r", "task": "2:fork-latency",
                "size_mib": size, "rep": rep, "fork_ns": 1e6, "feature_requested": True, **evidence}
    held = {"feature_config": "y", "prctl_ret": 0, "pagetables_delta_kb": 8}
    rows = [rec("patched", 1, 0, parent_vmpte_kb=72, **held), rec("patched", 1, 1),
            rec("patched", 1024, 0, parent_vmpte_kb=2124, **held), rec("patched", 1024, 1),
            rec("stock", 1024, 0, parent_vmpte_kb=2124, **dict(held, feature_config="n")),
            rec("stock", 1024, 1), rec("stock", 64, 1),
            dict(rec("stock", 64, 2), feature_requested=False)]
    df = stats.add_conditions(pd.DataFrame(rows))
    assert list(df["feature_state"]) == ["unproven", "unproven", "active", "active", "inactive",
                                   "inactive", "unproven", "off"]
    assert list(df["condition"])[3] == "patched: COW PTE fork"


def test_value_copied_into_every_round_counts_once(run):
    _, df = stats.load_run(run)
    df.loc[df["workload"] == "fault-latency", "task"] = "3:fault-latency"
    df.loc[df["workload"] == "fault-latency", "fork_ns"] = 123.0     # the one evidence fork
    part = df[(df["workload"] == "fault-latency") & (df["condition"] == "stock: fork")]
    assert len(stats.values(part, "fork_ns")) == 1
    assert len(stats.values(part, "mean_ns")) == len(part)


def test_ratio_claim_divides_by_the_plain_fork_of_the_same_kernel():
    import pandas as pd
    rows = [{"kernel": k, "workload": "afl", "run_id": "r", "task": f"{i}:afl", "execs_per_sec": v,
             "feature_requested": cow, "feature_state": "active" if cow else "off"}
            for i, (k, cow, v) in enumerate([("stock", False, 200.0), ("patched", False, 100.0),
                                             ("patched", True, 97.5)])]
    df = stats.add_conditions(pd.DataFrame(rows))
    metas = [stored.run_of({"kernels": {"stock": {}, "patched": {}}, "accel": "tcg"})]
    claim = {"workload": "afl", "metric": "execs_per_sec", "kind": "ratio", "value": 0.975,
             "tolerance": 0.01, "note": "SQLite"}
    (row,) = report.check_claims([claim], df, metas).to_dict("records")
    # 97.5 / 100 on the patched kernel, not 97.5 / 200 against stock
    assert row["measured"] == "0.975" and row["status"] == "reproduced"
    assert row["condition"] == "cow-pte / fork" and row["note"] == "SQLite"
