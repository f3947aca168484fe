"""Kernel preparation, one service for build, boot, run, verify and attribute: the source, the
series applied to it, the config fragments and the build (through the build cache and the
workbench's object folders), each step shown as it happens, and a built kernel's facts kept in
the run's store.

  source(spec)            the resolved source tree (harness.kernel.sources)
  series(spec)            the loaded series (harness.kernel.series)
  apply(series, source)   the patched tree and the per-patch report, printed as a table
  Kernels(exp, profile)   an experiment's kernels: kernel(spec, store) -> [(layout, Kernel)]
  Prebuilt({label: (tree, Kernel)})   kernels built beforehand (attribute's steps), same shape
  record(store, label, kernel)        a built kernel's log and facts kept in the run
"""
from harness import safety, ui
from harness.kernel import kconfig, layout, series as series_mod, sources
from harness.kernel.build import Build
from harness.experiment import kernel_needs


def source(spec, label=None, insecure=False):
    """The source tree `spec` names (downloaded, unpacked or checked out once, then cached)."""
    with ui.step(f"{_at(label)}kernel source {safety.redact(spec)}") as say:
        tree = sources.resolve(spec, insecure=insecure)
        say(tree.id)
    return tree


def series(spec, label=None):
    with ui.step(f"{_at(label)}series {spec}") as say:
        loaded = series_mod.load(spec)
        say(f"{len(loaded.patches)} patches, v{loaded.version}, based on {loaded.base or '?'}")
    return loaded


def apply(loaded, tree, label=None, show=True):
    """(patched tree, report) of the series applied to the tree; the report's table printed."""
    with ui.step(f"{_at(label)}apply {len(loaded.patches)} patches to {tree.id}"):
        patched, report = series_mod.apply(loaded, tree)
    if show:
        ui.console.print(report.table(), markup=False, highlight=False)
    return patched, report


def _at(label):
    return f"[{label}] " if label else ""


def feature_config(profile, kernel):
    """The profile's kernel option in this kernel's config ("n" when unset; None: no option)."""
    option = profile.proof.get("config") if profile else None
    return kconfig.parse(kernel.config).get(option, "n") if option else None


def record(store, label, kernel, profile=None):
    """Keep a built kernel's log and facts in the run (with the feature profile's option)."""
    store.keep(label, kernel.path / "build.log", kernel.path / "kernel.json")
    store.update_kernel(label, release=kernel.info["release"],
                        config_sha=kernel.info["config_sha"], toolchain=kernel.info["toolchain"],
                        fragments=kernel.info["fragments"], patches=kernel.info["patches"],
                        base=kernel.info.get("base", {"name": kernel.info.get("base_config")}),
                        feature_config=feature_config(profile, kernel),
                        cached_build=kernel.info.get("cached", False))


class Kernels:
    """The kernels of an experiment, prepared when asked for: kernel(spec, store) builds (or finds
    in the cache) the spec's layout variants. A series is applied once per source; the tree a
    kernel was built from stays in `trees` (its selftests are built from it)."""

    def __init__(self, exp, profile=None):
        """profile: the experiment's feature profile (the Run's), whose option each kernel's facts
        name; None (build, boot: nothing is stored) names none."""
        self.exp, self.profile = exp, profile
        self.trees = {}
        self._series = {}

    def tree(self, spec, store):
        """(source tree to build, patch ids): the pristine source, or the source with the series."""
        tree = source(spec.source, spec.label, insecure=self.exp.insecure_download)
        if not spec.series:
            return tree, []
        key = (tree.id, spec.series)
        if key not in self._series:
            loaded = series(spec.series, spec.label)
            patched, report = apply(loaded, tree, spec.label)
            self._series[key] = (patched, loaded, report)
        patched, loaded, report = self._series[key]
        store.update_kernel(spec.label, series={**loaded.as_dict(), "apply": [
            {"index": r.index, "status": r.status, "detail": r.detail} for r in report.results]})
        return patched, series_mod.patch_ids(loaded)

    def kernel(self, spec, store):
        """[(layout index, Kernel)]: the kernel's layout variants (one: the kernel as it is)."""
        tree, patches = self.tree(spec, store)
        self.trees[spec.label] = tree
        fragments = kconfig.with_needs([kconfig.fragment(f) for f in spec.fragments],
                                       kernel_needs(self.exp), spec.label)
        config = spec.base or self.exp.base
        build = Build(tree, fragments, patches=patches, base=config,
                      **({"jobs": self.exp.jobs} if self.exp.jobs else {}))
        store.update_kernel(spec.label, source=tree.as_dict(), build_key=build.key)
        wanted = layout.indices(spec.layout, self.exp.variants)
        with ui.step(f"[{spec.label}] build {tree.id}"
                     + (f" as {len(wanted)} layout variants" if wanted != [0] else "")) as say:
            if wanted == [0]:
                kernels = {0: build.run(say)}
            else:
                kernels = layout.build_variants(tree, fragments, patches, wanted, self.exp.jobs, say, config)
        record(store, spec.label, kernels[wanted[0]], self.profile)
        if wanted != [0]:
            store.update_kernel(spec.label, variants=[
                {"variant": i, "pad": layout.pad(i), "build_key": k.key, "release": k.info["release"],
                 "cached_build": k.info.get("cached", False), "build_seconds": k.info.get("build_seconds")}
                for i, k in kernels.items()])
        return sorted(kernels.items())


class Prebuilt:
    """Kernels built beforehand, {label: (tree, Kernel)}, offered in Kernels' shape."""

    def __init__(self, built, profile=None):
        self.built, self.profile = built, profile
        self.trees = {label: tree for label, (tree, _) in built.items()}

    def kernel(self, spec, store):
        tree, kernel = self.built[spec.label]
        store.update_kernel(spec.label, source=tree.as_dict(), build_key=kernel.key)
        record(store, spec.label, kernel, self.profile)
        return [(0, kernel)]
