"""Workloads: the registry of workloads/<name>/ folders, their C libraries, and running them.

A workload folder holds its C source, a Python driver that runs in the guest and loads the C
library with ctypes, and manifest.toml (parameters with defaults, metrics with units). The library
is compiled on the host (the guest is the same Debian release), cached by the source's hash, and
sent to the guest with the driver and workloads/common. A manifest may also list [[artifacts]]:
other files made on the host by a command (a target compiled with afl-cc, a host tool), cached
and staged next to the driver the same way.
"""
import json
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness import cache, feature, paths, tools
from harness.measure import activity
from harness.errors import BuildError, UserError, WorkloadError

GUEST_DIR = "/tmp/harness/workloads"


def names():
    return sorted(p.name for p in paths.WORKLOADS.iterdir() if (p / "manifest.toml").exists())


def parse_value(text, default):
    """A command-line parameter value, typed like the manifest's default."""
    try:
        if isinstance(default, bool):
            return text.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise UserError(f"parameter value '{text}' is not a {type(default).__name__}") from None
    return text


@dataclass
class Workload:
    name: str
    dir: Path
    manifest: dict
    _built: list = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, name):
        """A workload by name (workloads/NAME) or by the path of a folder laid out the same way."""
        folder = Path(name) if Path(name).is_dir() else paths.WORKLOADS / name
        if not (folder / "manifest.toml").exists():
            raise UserError(f"unknown workload '{name}' (known: {', '.join(names())})")
        manifest = tomllib.loads((folder / "manifest.toml").read_text())
        return cls(manifest.get("name", folder.name), folder, manifest)

    @property
    def kernel_config(self):
        """The kernel options the workload needs ([CONFIG_X, ...], each =y; checked by
        harness/validate.py), which the harness adds to the kernels that run it."""
        return list(self.manifest.get("kernel_config", []))

    def params(self, overrides=None):
        """The manifest's defaults with overrides applied; unknown names are an error."""
        defaults = dict(self.manifest.get("params", {}))
        result = dict(defaults)
        for key, value in (overrides or {}).items():
            key = key.replace("-", "_")
            key = feature.LEGACY_PARAMS.get(key, key) if key not in defaults else key
            if key not in defaults:
                raise UserError(f"workload {self.name} has no parameter '{key}' "
                                f"(it has: {', '.join(sorted(defaults))})")
            result[key] = parse_value(value, defaults[key]) if isinstance(value, str) else value
        return result

    def library(self):
        """Compile the C sources into the cached shared library; returns its path."""
        # Sources are relative to the workload's folder and may be shared ("../common/forkutil.c"):
        # each source's folder is an include folder, and its headers are part of the cache key.
        sources = [(self.dir / s).resolve() for s in self.manifest.get("sources", [])]
        include_dirs = sorted({s.parent for s in sources})
        headers = sorted(h for d in include_dirs for h in d.glob("*.h"))
        flags = ["-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC"]
        key = cache.digest(self.name, [s.read_text() for s in sources],
                           [h.read_text() for h in headers], flags,
                           tools.first_line(["gcc", "--version"]))
        lib = cache.entry("workloads", key) / self.manifest["library"]
        if lib.exists():
            return lib
        with cache.locked("workload", key):
            if lib.exists():              # built by another harness while this one waited
                return lib
            with cache.building("workloads", key) as out:
                argv = ["gcc", *flags, *(f"-I{d}" for d in include_dirs),
                        "-o", str(out / self.manifest["library"]), *map(str, sources)]
                proc = tools.run(argv, check=False)
                if proc.returncode != 0:
                    raise BuildError(f"workload {self.name}'s C code does not compile",
                                     log_tail=proc.stderr)
        return lib

    def artifacts(self):
        """Build the manifest's [[artifacts]]: extra files made on the host by a command (a program
        compiled with another compiler, a host tool staged for the guest), each cached by its
        command, its tool's version and the bytes of its inputs. Returns their paths."""
        built = []
        for art in self.manifest.get("artifacts", []):
            command, name = art["command"], art["file"]
            inputs = [self.dir / i for i in art.get("inputs", [])]   # absolute paths stay absolute
            absent = [str(i) for i in inputs if not i.exists()]
            if not shutil.which(command[0]) or absent:
                raise BuildError(f"workload {self.name} needs {', '.join(absent) or command[0]} "
                                 f"for {name} (Debian package: {art.get('package', command[0])})")
            key = cache.digest(self.name, name, command,
                               [cache.digest(i.read_bytes()) for i in inputs],
                               tools.first_line([command[0], "--version"]))
            path = cache.entry("workloads", key) / name
            with cache.locked("workload", key):
                if path.exists():
                    built.append(path)
                    continue
                with cache.building("workloads", key) as out:
                    argv = [a.replace("{out}", str(out / name)) for a in command]
                    proc = tools.run(argv, cwd=self.dir, check=False)
                    if proc.returncode != 0:
                        raise BuildError(f"workload {self.name}: building {name} failed",
                                         log_tail=proc.stderr)
            built.append(path)
        return built

    def stage(self, dest):
        """The folder tree sent to the guest: common/ and NAME/ with driver and library."""
        dest = Path(dest)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(paths.WORKLOADS / "common", dest / "common",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (dest / self.name).mkdir(parents=True)
        shutil.copy(self.dir / self.manifest["driver"], dest / self.name)
        if self._built is None:     # built (or found in the cache) once, not again for every task
            self._built = ([self.library()] if self.manifest.get("sources") else []) + self.artifacts()
        for path in self._built:
            shutil.copy(path, dest / self.name)
        return dest

    def argv(self, params, profile=None):
        """The guest's command line; a workload with the feature parameter is also told the
        profile's switch (the drivers' guestlib.params_parser takes it)."""
        args = ["python3", f"{GUEST_DIR}/{self.name}/{self.manifest['driver']}"]
        for key, value in sorted(params.items()):
            args += [f"--{key.replace('_', '-')}", str(int(value) if isinstance(value, bool) else value)]
        if profile is not None and feature.PARAM in params:
            args += profile.guest_args()
        return args

    def run(self, machine, params, store, staging, profile=None):
        """Run in the guest; every record is stored as it arrives, with its feature state when it
        carries the evidence (harness.measure.activity, judged by the profile). Returns the records."""
        profile = profile or feature.load()
        machine.put(self.stage(staging), GUEST_DIR)
        records, errors = [], []

        def on_line(line):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return
            if record.get("type") == "error":
                errors.append(record)
            else:
                if activity.has_evidence(record, profile):      # judged as the record arrives
                    record = activity.label(record, profile)
                records.append(record)
                store(record)

        code, out, err = machine.run(self.argv(params, profile), timeout=self.manifest.get("timeout_s", 600),
                                     on_line=on_line)
        if errors:
            raise WorkloadError(f"workload {self.name}: {errors[0].get('message')}",
                                log_tail=err)
        if code != 0:
            raise WorkloadError(f"workload {self.name} exited with code {code}", log_tail=err or out)
        return records
