"""Bisectability: build the tree after each patch of a series, under each config set.

The series is applied once (series.apply: one commit per patch). One scratch git worktree under
the cache is checked out to commit 1, 2, ... N in turn, so only the files a patch changes get new
mtimes, and each config set keeps one object directory across the patches, so make rebuilds only
what depends on those files. The source and the cached patched tree are never written to.

A build (patch k, config) is "ok", "error" (the build failed: first error lines kept) or "config"
(a requested option is not in the final .config, e.g. an option the series adds in a later patch).
"""
import re
import tempfile
import time
from pathlib import Path

from harness import cache
from harness.kernel import kconfig, sources
from harness.kernel import series as series_mod
from harness.kernel.build import Build
from harness.errors import BuildError, InfraError, UserError

FIRST_LINES = 12


def objdir_for(work, label):
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", label)[:40]   # no "=": kbuild's tools/ break on it
    return work / "obj" / f"{safe}-{cache.digest(label, length=8)}"


def _first_lines(exc):
    text = exc.log_tail or str(exc)
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[:FIRST_LINES]


def describe(outcome):
    """One line about a finished build: 'patch 2/3 [base]: ok in 12.0 s'."""
    return (f"patch {outcome['index']}/{outcome['of']} [{outcome['config']}]: "
            f"{outcome['status']} in {outcome['seconds']} s")


def defined(fragments, tree, optional):
    """The fragments without the optional ones (by name) whose every option the tree's Kconfig
    does not define yet (the feature's option before the patch adding it)."""
    return [f for f in fragments if f.name not in optional or not f.values
            or any(kconfig.kconfig_entry(tree, s) is not None for s in f.values)]


def _step(build, objects, objdir, outcome, say):
    """One build into outcome: a kernel, or with objects only those objects compiled."""
    if objects is not None:
        with tempfile.TemporaryDirectory(prefix="objects-") as scratch:
            outcome["config_text"], outcome["objects"] = build.compile_objects(objects, Path(scratch), say)
        outcome["objdir"] = str(objdir)
        return
    kernel = build.run(say)
    cached = kernel.info.get("cached", False)
    # the object folder shows what this build compiled only when it just ran there
    outcome.update(cached=cached, kernel=str(kernel.path), objdir=None if cached else str(objdir))


def build_each_patch(source, series, fragment_sets, jobs=None, progress=None, on_outcome=None,
                     optional=(), objects=None):
    """Build patches 1..k for every k and every config set; one dict per (patch, config), each
    also given to on_outcome as soon as it is known (progress gets free-text messages).

    fragment_sets: {label: [kconfig.Fragment, ...]}. A build failure or a config refusal is a
    result, not an exception; only a broken machine (InfraError) or a series that does not apply
    (UserError from series.apply) stops it. optional: names of fragments left out of a step
    whose tree defines none of their options (else such a step is a "config" refusal).
    objects: objects(config text) names the tree-relative .o paths to compile instead of building
    kernels; each outcome then carries its final .config ("config_text") and "objects", no kernel.
    """
    say = progress or (lambda msg: None)
    patched, _ = series_mod.apply(series, source)
    commits = sources.git_out(patched.path, "rev-list", "--reverse", f"{source.commit}..HEAD").split()
    if len(commits) != len(series.patches):
        raise InfraError(f"{patched.path} has {len(commits)} commits on top of {source.commit}, "
                         f"expected one per patch ({len(series.patches)})")
    ids = series_mod.patch_ids(series)
    name = f"{source.id}-{series.id}"
    work = cache.root() / "bisect" / name
    tree = work / "tree"
    results = []
    with cache.locked("bisect", name):
        for patch, commit in zip(series.patches, commits):
            k, n = patch.index, len(series.patches)
            series_mod.worktree(source, tree, commit)
            step = series_mod.prefix_tree(source, series, k, tree, commit)
            for label, fragments in fragment_sets.items():
                say(f"patch {k}/{n} [{label}]: building")
                # patches 1..k, as a run that applies them records them: the same kernel is
                # one cache entry, however it was reached
                objdir = objdir_for(work, label)
                build = Build(step, defined(fragments, step.path, optional), patches=ids[:k],
                              objdir=objdir,
                              **({"jobs": jobs} if jobs else {}))
                outcome = {"index": k, "of": n, "title": patch.title, "config": label, "status": "ok",
                        "lines": [], "seconds": None, "cached": False, "kernel": None, "objdir": None}
                started = time.monotonic()
                try:
                    _step(build, objects, objdir, outcome,
                          lambda msg: say(f"patch {k}/{n} [{label}]: {msg}"))
                except BuildError as exc:
                    outcome.update(status="error", lines=_first_lines(exc))
                except UserError as exc:
                    outcome.update(status="config", lines=_first_lines(exc))
                outcome["seconds"] = round(time.monotonic() - started, 1)
                say(describe(outcome))
                if on_outcome:
                    on_outcome(outcome)
                results.append(outcome)
    return results


def table(results):
    """patch x config -> ok / error / config, then the first lines of each failing build."""
    labels = list(dict.fromkeys(r["config"] for r in results))
    patches = list(dict.fromkeys((r["index"], r["title"]) for r in results))
    outcomes = {(r["index"], r["config"]): r for r in results}

    def show(r):
        if r is None:
            return "-"
        return f"{r['status']} (cached)" if r["cached"] else f"{r['status']} {r['seconds']:.0f}s"

    rows = [("#", "patch", *labels)]
    for index, title in patches:
        title = title if len(title) <= 50 else title[:47] + "..."
        rows.append((str(index), title, *(show(outcomes.get((index, label))) for label in labels)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(row, widths)).rstrip() for row in rows]
    for r in results:
        if r["status"] != "ok":
            lines.append("")
            lines.append(f"patch {r['index']} [{r['config']}]: {r['status']}")
            lines += [f"  {line}" for line in r["lines"]]
    return "\n".join(lines)
