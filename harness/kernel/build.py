"""Build: one object for the CLI and the API, turning (source, patches, fragments) into a Kernel.

tuxmake (runtime null) does the work: it merges the fragments with the kernel's merge_config.sh,
builds out of tree, and writes metadata.json with a reproducer command line. The harness adds what
tuxmake does not do: it reads the final .config back and fails when a requested option was dropped,
and it caches the result under hash(source id, patches, fragments, toolchain), so the same request
twice builds nothing the second time. Kernels of one source are built in its workbench
(workbench.py): one tree moved commit by commit and a small pool of object folders, so a kernel that
differs from a built one by patches or options recompiles only what that changes.
"""
import functools
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import cache, tools, ui
from harness.kernel import gcov, kconfig, workbench
from harness.errors import BuildError, HarnessError, InfraError

BASE_CONFIG = "tinyconfig"
# layout variants (harness/kernel/layout.py): where the pad goes in the linker script make writes
LINK_SCRIPT = "arch/x86/kernel/vmlinux.lds"
PAD_ANCHOR = "KEEP(*(.head.text))"
PAD_LINE = re.compile(r" \. = \. \+ \d+; /\* kernel-harness layout variant \*/")


@functools.cache
def toolchain():
    return {
        "gcc": tools.first_line(["gcc", "--version"]),
        "binutils": tools.first_line(["ld", "--version"]),
        "make": tools.first_line(["make", "--version"]),
        "tuxmake": tools.first_line(["tuxmake", "--version"]),
    }


@dataclass
class Kernel:
    """A built kernel in the cache: bzImage, config, System.map, build.log, kernel.json."""
    path: Path
    info: dict

    @property
    def image(self):
        """What QEMU boots: vmlinux through its PVH entry when the kernel has one (no
        decompression), else bzImage."""
        vmlinux = self.path / "vmlinux"
        return vmlinux if vmlinux.exists() else self.path / "bzImage"

    @property
    def config(self):
        return (self.path / "config").read_text()

    @property
    def key(self):
        return self.info["key"]

    @property
    def hz(self):
        """CONFIG_HZ, the kernel's tick rate (None if its config does not say)."""
        hz = kconfig.parse(self.config, str(self.path / "config")).get("CONFIG_HZ")
        return int(hz) if hz else None


@dataclass
class Build:
    source: object                       # sources.SourceTree (or a patched tree)
    fragments: list                      # kconfig.Fragment, in merge order
    base: object = BASE_CONFIG           # kconfig.Base, or what --base names
    patches: list = field(default_factory=list)   # ids of applied patches, in order
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    force: bool = False                  # rebuild in the existing build dir even when cached
    objdir: Path = None                  # where make's objects go (default: a workbench slot)
    into: Path = None                    # write the kernel here instead of the cache (built anyway)
    pad: int = 0                         # a layout variant's bytes ahead of the main text (layout.py)

    def __post_init__(self):
        self.wanted = kconfig.requested(self.fragments)
        self.tools = toolchain()
        self.base = kconfig.base(self.base)
        self.key = cache.digest(self.source.id, self.patches, self.base.key,
                                [f.text for f in self.fragments], self.tools)
        self.objdir = Path(self.objdir) if self.objdir else None
        self.tree = self.source.path         # where make reads the source (the workbench's tree)
        self.base_kernel = None              # {"slot", "kernel", "reason"}: whose objects it starts from

    def config_stamp(self):
        """What the object folder's .config was made from (kept in harness-config.sha)."""
        return cache.digest(self.base.key, [f.text for f in self.fragments], self.source.id)

    def cached(self):
        found = cache.find("builds", self.key, "kernel.json")
        if found:
            return Kernel(found, json.loads((found / "kernel.json").read_text()))
        return None

    def tuxmake(self, outdir, *targets):
        argv = ["tuxmake", "--runtime", "null", "--target-arch", "x86_64", "--toolchain", "gcc",
                "--kconfig", self.base_file() or self.base.name,
                "--wrapper", "ccache", "--jobs", str(self.jobs),
                # uname's "#N" counts builds in a folder: pinned, the same inputs give the same
                # kernel however many builds the folder saw (tuxmake pins time, user and host)
                "--environment", "KBUILD_BUILD_VERSION=1",
                "-C", str(self.tree), "--build-dir", str(self.objdir),
                "--output-dir", str(outdir)]
        for frag in self.fragments:
            argv += ["--kconfig-add", str(frag.path)]
        # a coverage kernel: the series' files profiled by make variables (harness.kernel.gcov)
        return argv + list(targets) + gcov.make_vars(gcov.profiled(self.fragments))

    def base_file(self):
        """A config file base as the build uses it, kept in the cache by its content (None otherwise)."""
        if self.base.text is None:
            return None
        path = cache.root() / "bases" / f"{cache.digest(self.base.text)}.config"   # by its content
        if not path.exists() or path.read_text() != self.base.text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.base.text)
        return str(path)

    def run(self, progress=None):
        say = progress or (lambda msg: None)
        with cache.locked("build", self.key):
            found = self.cached()
            if found and not self.force and not self.into:
                say(f"kernel {self.key} is cached")
                found.info["cached"] = True
                return found
            if self.objdir:                  # the caller's own folder (bisect, attribute)
                return self._in_folder(say)
            bench, why = workbench.for_source(self.source)
            if bench is None:
                self.objdir = cache.root() / "objects" / self.key
                self.base_kernel = {"slot": None, "kernel": None, "reason": f"built in place: {why}"}
                say(self.base_kernel["reason"])
                return self._in_folder(say)
            with workbench.locked(bench):
                return self._on_bench(bench, say)

    def _on_bench(self, bench, say):
        want = {"key": self.key, "commit": self.source.commit, "base": self.base.key, "options": self.wanted,
                "source_id": self.source.id, "patches": len(self.patches)}
        if self.base.text is not None:       # a config file: the config it asks for is known
            want["expected"] = {**kconfig.parse(self.base.text, self.base.name), **self.wanted}
        slot, rec, reason = workbench.choose(bench, want)
        self.objdir = workbench.objdir(bench, slot)
        self.base_kernel = {"slot": slot, "kernel": rec and rec.get("key"), "reason": reason}
        say(f"base: {reason} (object folder {slot})")
        workbench.checkout(bench, self.source.commit)
        self.tree = bench.tree
        status, final = "failed", None
        try:
            kernel = self._in_folder(say)
            status, final = "ok", kconfig.parse(kernel.config, "the kernel's .config")
            return kernel
        finally:                             # what the folder's objects are now, built or not
            workbench.record(bench, slot, {**want, "config": final}, status)

    def _in_folder(self, say):
        # A build killed half-way (SIGKILL, a reboot) leaves half-written objects that make
        # then takes for finished: what it wrote after its in-progress marker is removed.
        busy = self.objdir / workbench.MARKER
        workbench.recover(self.objdir, say)
        self.objdir.mkdir(parents=True, exist_ok=True)
        link_script(self.objdir, self.pad)
        busy.write_text(self.key + "\n")
        try:
            place = cache.scratch(Path(self.into)) if self.into else cache.building("builds", self.key)
            with place as out:
                kernel = self._build(out, say)
        except HarnessError:          # make stopped on its own: its folder is consistent
            busy.unlink(missing_ok=True)
            raise
        busy.unlink()
        return kernel

    def configure(self, cfg_out):
        """The final .config (text) of the base and the fragments, made in the object folder and
        checked against every requested option (a UserError names what did not land); nothing
        compiled. cfg_out receives tuxmake's config stage (config, build.log)."""
        # tuxmake keeps an existing .config in the build folder and then merges no fragment at
        # all: when the fragments are not the ones that made it, start again from them.
        if self.objdir is None:              # configured alone: the cache's folder for this key
            self.objdir = cache.root() / "objects" / self.key
        self.objdir.mkdir(parents=True, exist_ok=True)
        stamp = self.objdir / "harness-config.sha"
        wanted = self.config_stamp()
        if not stamp.exists() or stamp.read_text() != wanted:
            (self.objdir / ".config").unlink(missing_ok=True)
        proc = tools.run(self.tuxmake(cfg_out, "config"), check=False)
        if proc.returncode != 0 or not (cfg_out / "config").exists():
            raise BuildError("kernel configuration failed", log_tail=_tail(cfg_out / "build.log", proc))
        text = (cfg_out / "config").read_text()
        kconfig.verify(text, self.wanted, self.tree)
        stamp.write_text(wanted)
        return text

    def compile_objects(self, objects, out, progress=None):
        """Configure as run() does, then compile only objects(config text) (tree-relative .o
        paths: those the .config builds) with make in the object folder: the series' own files in
        minutes instead of a whole kernel. Returns (the final .config's text, the objects); a
        compile error is a BuildError."""
        say = progress or (lambda msg: None)
        with cache.locked("build", self.key):
            self.objdir = self.objdir or cache.root() / "objects" / self.key
            self.objdir.mkdir(parents=True, exist_ok=True)
            config = self._configure(out, say)
            objects = objects(config)
            say(f"compiling {len(objects)} objects with {self.jobs} jobs")
            # the compilers as tuxmake's ccache wrapper names them: make rebuilds nothing for them
            proc = tools.run(["make", "-C", str(self.source.path), f"O={self.objdir}", f"-j{self.jobs}",
                              "CC=ccache gcc", "HOSTCC=ccache gcc", "ARCH=x86_64", *objects], check=False)
            if proc.returncode != 0:
                text = (proc.stderr or "") + (proc.stdout or "")
                errors = [line for line in text.splitlines() if "error" in line.lower()]
                raise BuildError("compiling the series' objects failed",
                                 log_tail="\n".join(errors[:15]) or text[-2000:])
            return config, objects

    def _configure(self, out, say):
        """tuxmake config with the fragments into the object folder; the checked .config text."""
        say("configuring (tuxmake config)")
        cfg_out = out / "config-stage"
        return self.configure(cfg_out)

    def _build(self, out, say):
        started = time.monotonic()
        self._configure(out, say)
        say(f"building bzImage with {self.jobs} jobs (tuxmake kernel)")
        begun = time.time()
        ui.watch(lambda: progress_of(self.objdir, begun))
        proc = tools.run(self.tuxmake(out, "kernel"), check=False)
        if proc.returncode != 0 or not (out / "bzImage").exists():
            kept = self.objdir / "last-failed-build.log"
            if (out / "build.log").exists():
                shutil.copy(out / "build.log", kept)
            raise BuildError(f"kernel build failed for {self.source.id} (full log: {kept})",
                             log_tail=_errors(out / "build.log") or _tail(out / "build.log", proc))
        shutil.rmtree(out / "config-stage")
        shutil.copy(self.objdir / "System.map", out / "System.map")
        if self.into or kconfig.parse((out / "config").read_text()).get("CONFIG_PVH") == "y":
            shutil.copy(self.objdir / "vmlinux", out / "vmlinux")
        kconfig.verify((out / "config").read_text(), self.wanted, self.tree)
        coverage = self._keep_gcov(out)
        release = (self.objdir / "include" / "config" / "kernel.release").read_text().strip()
        info = {
            "key": self.key,
            "source": self.source.as_dict(),
            "patches": self.patches,
            "base_config": self.base.name,
            "base": self.base.as_dict(),
            "fragments": [{"name": f.name, "path": str(f.path)} for f in self.fragments],
            "config_sha": cache.digest((out / "config").read_text()),
            "release": release,
            "toolchain": self.tools,
            "build_seconds": round(time.monotonic() - started, 1),
            "objects_compiled": workbench.compiled_since(self.objdir, begun),
            "built_from": self.base_kernel,
            "tuxmake": json.loads((out / "metadata.json").read_text()),
            **({"gcov": coverage} if coverage else {}),
        }
        (out / "kernel.json").write_text(json.dumps(info, indent=2) + "\n")
        say(f"compiled {info['objects_compiled']} objects in {info['build_seconds']} s")
        info["cached"] = False
        return Kernel(Path(self.into) if self.into else cache.entry("builds", self.key), info)

    def _keep_gcov(self, out):
        """A coverage kernel's profiled files and the paths its counts name (None: not one); the
        objects' .gcno are copied into the kernel (the object folder is lent to later kernels)."""
        files = gcov.profiled(self.fragments)
        if not files:
            return None
        missing = gcov.keep_notes(self.objdir, files, out)
        return {"files": [f for f in files if f not in missing], "not_compiled": missing,
                "tree": str(self.tree), "objdir": str(self.objdir)}


def link_script(objdir, pad):
    """The folder's linker script with `pad` bytes of never-executed space after the boot-entry
    code (harness/kernel/layout.py), or with none: every build sets it, so a variant's pad left
    behind by a killed relink never reaches another kernel. Written only when it changes (a new
    script makes make link again)."""
    script = objdir / LINK_SCRIPT
    if not script.exists():
        return
    text = script.read_text()
    want = padded(unpadded(text), pad) if pad else unpadded(text)
    if want != text:
        script.write_text(want)


def padded(script, size):
    """The linker script with `size` bytes of space after the head code."""
    if script.count(PAD_ANCHOR) < 1:
        raise InfraError(f"{LINK_SCRIPT} has no '{PAD_ANCHOR}': this architecture's link cannot take a layout pad")
    return script.replace(PAD_ANCHOR, f"{PAD_ANCHOR} . = . + {size}; /* kernel-harness layout variant */", 1)


def unpadded(script):
    """The linker script as make wrote it: any variant's pad taken out."""
    return PAD_LINE.sub("", script)


def progress_of(objdir, since):
    """What a running build has done: the objects written since `since` (a time.time()) and the
    newest of them. tuxmake runs make --silent, so its log names no targets; the folder does."""
    count, newest, newest_time = 0, None, since
    for folder, _, files in os.walk(objdir):
        for name in files:
            if not name.endswith(".o"):
                continue
            try:
                mtime = os.stat(os.path.join(folder, name)).st_mtime
            except OSError:               # removed while we looked
                continue
            if mtime >= since:
                count += 1
                if mtime >= newest_time:
                    newest, newest_time = os.path.join(folder, name), mtime
    if not count:
        return None
    return f"{count} objects built, latest {os.path.relpath(newest, objdir)}"


def _tail(log, proc, lines=25):
    text = log.read_text(errors="replace") if log.exists() else (proc.stdout or "") + (proc.stderr or "")
    return "\n".join(text.splitlines()[-lines:])


def _errors(log, lines=15):
    """The first compiler errors in a build log, with the line before each for context."""
    if not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()
    hits = [i for i, line in enumerate(text) if re.search(r"\berror\b|\*\*\*", line)]
    keep = []
    for i in hits[:lines]:
        for j in (i - 1, i):
            if j >= 0 and text[j] not in keep:
                keep.append(text[j])
    return "\n".join(keep[:lines])
