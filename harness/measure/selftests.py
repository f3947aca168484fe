"""The kernel's own vm selftests: build them from a tree, run them in a guest, tabulate their TAP.

A test is built statically on the host from the tree's sources (its catalog entry's files, e.g.
a test's .c, vm_util.c and, where the tree has it, thp_settings.c; the tree's kselftest.h and
mm/gup_test.h) against UAPI headers
installed from the same tree through a throwaway O= directory, so the cached source tree is never
written. The tree may be another one than the kernel's (a test that appeared after the kernel's
release: take it from e.g. `debian:linux-source-6.12`), and the static binary runs on the older
kernel. It runs in the guest plainly or under the feature profile's launcher (features/<name>/,
[selftests] launcher), which turns the feature on and proves it before exec'ing the test, printing
"<launcher_name>: ... active"; a launcher that cannot prove it runs nothing, and the run says so
instead of reporting results. The test runs under a
pseudo-terminal: its stdout is then line-buffered, so a forked child that exits never repeats the
parent's unflushed output.
"""
import fnmatch
import hashlib
import re
import shutil
import signal
import tempfile
import time
import tomllib
from pathlib import Path

from harness import cache, paths, tools
from harness.kernel import sources as sources_mod
from harness.errors import BuildError, GuestError, UserError
from harness.measure.tap import parse_plain, parse_tap_report, last_started  # noqa: F401 (the API)

GUEST_DIR = "/tmp/harness/selftests"
SWAPFILE = "/swapfile"
CATALOG = paths.WORKLOADS / "selftests" / "mm-selftests.toml"
SELFTESTS = "tools/testing/selftests"
SELFTEST_DIRS = (f"{SELFTESTS}/mm", f"{SELFTESTS}/vm")   # 6.3+, 6.2
CFLAGS = ["-O2", "-static", "-Wall"]

# Runs argv on a pseudo-terminal in the guest and exits with its exit code (128+N for signal N).
PTY_RUN = ("import os, pty, sys\n"
           "code = os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:]))\n"
           "sys.exit(code if code >= 0 else 128 - code)\n")


# --- building ----------------------------------------------------------------------------------

def selftest_dir(tree, name=None):
    """The tree's folder of selftests holding the test `name` (its first source), or None: the mm
    selftests' folder, or tools/testing/selftests/<dir> for a test whose catalog entry names one."""
    subs = (f"{SELFTESTS}/{spec(name)['dir']}",) if name and "dir" in spec(name) else SELFTEST_DIRS
    for sub in subs:
        folder = Path(tree) / sub
        if (folder / spec(name)["sources"][0]).exists() if name else folder.is_dir():
            return folder
    return None


def test_tree(spec):
    """The tree to take the selftests from: a local path as it is, or any other source spec
    (debian:linux-source-6.12, a tarball URL, git+URL#REF) resolved into the cache."""
    text = str(spec)
    if re.match(r"^(debian:|git\+|(https?|ftp)://)", text):
        return sources_mod.resolve(text).path
    return Path(text).expanduser()


def _files_digest(root, folders):
    """A hash of every file's path and content under root/folder for each folder."""
    h = hashlib.sha256()
    for folder in folders:
        for path in sorted((Path(root) / folder).rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                h.update(f"{path.relative_to(root)}\0{len(data)}\0".encode() + data)
    return h.hexdigest()


def _compile(argv, what):
    proc = tools.run(argv, check=False)
    if proc.returncode != 0:
        text = (proc.stderr or "") + (proc.stdout or "")
        errors = [line for line in text.splitlines() if re.search(r"\berror\b", line)]
        raise BuildError(f"{what} does not compile", log_tail="\n".join(errors[:20]) or text[-2000:])


# a catalog entry's keys and their types
FIELDS = {"sources": list, "paths": list, "options": list, "args": list, "cflags": list,
          "timeout": int, "needs": str, "dir": str, "script": str}


def catalog(path=CATALOG):
    """{test: {"sources", "paths", "options", "args", "timeout", "needs", ...}} from mm-selftests.toml,
    every entry's keys and types checked (FIELDS; sources and paths required)."""
    tests = tomllib.loads(Path(path).read_text())
    for name, test in tests.items():
        where = f"{path}: [{name}]"
        if not isinstance(test, dict):
            raise UserError(f"{where} is not a table")
        unknown = sorted(set(test) - set(FIELDS))
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})")
        for key, kind in FIELDS.items():
            value = test.get(key)
            if key in ("sources", "paths") and not value:
                raise UserError(f"{where}: {key} is required and not empty")
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)
                                      or (kind is list and not all(isinstance(v, str) for v in value))):
                raise UserError(f"{where}: {key} must be {'a list of strings' if kind is list else kind.__name__}")
        if "/" in test.get("dir", "") or test.get("dir", "").startswith(".") \
                or "/" in test.get("script", "x"):
            raise UserError(f"{where}: dir and script are plain names (a folder under {SELFTESTS}, a file in it)")
    return tests


def for_paths(changed):
    """The catalog's tests whose paths match one of the changed files, in catalog order."""
    return [name for name, t in catalog().items()
            if any(fnmatch.fnmatch(path, glob) for path in changed for glob in t.get("paths", []))]


def first_test(name):
    """True for the catalog's first test: its cases keep their own names in the tables."""
    return name == next(iter(catalog()))


def spec(name):
    tests = catalog()
    if name not in tests:
        raise UserError(f"selftest '{name}' is not supported (supported: {', '.join(tests)})")
    return tests[name]


def build_test(name, source_path, out_dir=None, test_source=None):
    """Build one catalog selftest statically; returns the binary's path (copied into out_dir if
    given).

    source_path is the kernel tree under test; test_source, when given, is the tree to take the
    test from instead (a test newer than the kernel: a newer tree, a path or a source spec such as
    debian:linux-source-6.12). Cached by the content of the sources and UAPI headers it is
    built from.
    """
    tree = test_tree(test_source) if test_source else Path(source_path)
    folder = selftest_dir(tree, name)
    if folder is None:
        where = f"{SELFTESTS}/{spec(name)['dir']}" if "dir" in spec(name) else " or ".join(SELFTEST_DIRS)
        raise UserError(f"{tree} has no {name} selftest (no {spec(name)['sources'][0]} in "
                        f"{where}); pass test_source=<a newer tree>, "
                        f"e.g. debian:linux-source-6.12")
    if "script" in spec(name):
        return _copy_script_test(name, folder, out_dir)
    selftests = folder.parent
    sources = [folder / f for f in spec(name)["sources"] if (folder / f).exists()]
    if not (folder / spec(name)["sources"][0]).exists():
        raise UserError(f"{folder} has no {spec(name)['sources'][0]} (selftest {name})")
    inputs = sources + sorted(folder.glob("*.h")) + [selftests / "kselftest.h",
                                                    selftests / "kselftest_harness.h", tree / "mm" / "gup_test.h"]
    gcc = tools.first_line(["gcc", "--version"])
    key = cache.digest(name, spec(name).get("cflags", []), [(p.name, p.read_bytes().hex()) for p in inputs if p.exists()],
                       _files_digest(tree, ["include/uapi", "arch/x86/include/uapi"]), CFLAGS, gcc)
    return _cached(name, key, lambda out: _build_test(name, tree, sources, selftests, out), out_dir)


def _cached(name, key, make, out_dir=None):
    """The selftests cache's entry `key` holding `name` (a binary or a folder), made by make(out)
    into a scratch folder the first time (one maker at a time); returns its path, or a copy of it
    in out_dir when one is given."""
    made = cache.entry("selftests", key) / name
    with cache.locked("selftest", key):
        if not made.exists():
            with cache.building("selftests", key) as out:
                make(out)
    if out_dir is None:
        return made
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if made.is_dir():
        return Path(shutil.copytree(made, Path(out_dir) / name, symlinks=True, dirs_exist_ok=True))
    return Path(shutil.copy2(made, Path(out_dir) / name))


def _copy_script_test(name, folder, out_dir=None):
    """A test that is a script (the catalog's `script`, e.g. ftracetest): its whole folder, kept in
    the cache by its files' content; returns the folder (copied into out_dir/name if given)."""
    missing = [f for f in spec(name)["sources"] if not (folder / f).is_file()]
    if missing:
        raise UserError(f"{folder} has no {', '.join(missing)} (selftest {name})")
    key = cache.digest(name, _files_digest(folder, ["."]))
    return _cached(name, key, lambda out: shutil.copytree(folder, out / name, symlinks=True), out_dir)


def _uapi_headers(tree):
    """The tree's UAPI headers installed once into the cache (make headers_install through a
    throwaway O= folder, so the source tree stays pristine); returns the include folder."""
    key = cache.digest("uapi", _files_digest(tree, ["include/uapi", "arch/x86/include/uapi"]))
    usr = cache.entry("selftest-headers", key) / "usr"
    with cache.locked("selftest-headers", key):
        if not usr.exists():
            with cache.building("selftest-headers", key) as out, \
                    tempfile.TemporaryDirectory(prefix="selftest-headers-") as scratch:
                proc = tools.run(["make", "-s", "-C", str(tree), f"O={Path(scratch) / 'obj'}",
                                  f"INSTALL_HDR_PATH={out / 'usr'}", "headers_install"], check=False)
                if proc.returncode != 0:
                    raise BuildError(f"make headers_install failed in {tree}",
                                     log_tail=((proc.stderr or "") + (proc.stdout or ""))[-2000:])
    return usr / "include"


def _build_test(name, tree, sources, selftests, out):
    """gcc as the selftests' Makefile runs it: -I the tree's top (hmm-tests' lib/test_hmm_uapi.h),
    the installed UAPI headers and tools/include/uapi; a test's own cflags from the catalog."""
    include = _uapi_headers(tree)
    with tempfile.TemporaryDirectory(prefix="selftest-config-") as scratch:
        scratch = Path(scratch)
        # check_config.sh would write local_config.h into the tree; liburing is absent here.
        (scratch / "local_config.h").write_text("// No liburing support found\n")
        _compile(["gcc", *CFLAGS, "-I", str(scratch), "-I", str(selftests), "-I", str(sources[0].parent),
                  "-I", str(tree), "-isystem", str(include),
                  "-isystem", str(tree / "tools" / "include" / "uapi"), *spec(name).get("cflags", []),
                  "-o", str(out / name),
                  *map(str, sources), "-lrt", "-lpthread", "-lm"], f"the {name} selftest")


def build_launcher(profile, out_dir=None):
    """Compile the profile's launcher ([selftests] launcher, a C file in its folder) statically
    (cached); returns its path, or None when the profile has no launcher."""
    source = profile.launcher_source()
    if source is None:
        return None
    name = profile.selftests.get("launcher_name", source.stem)
    flags = ["-O2", "-static", "-Wall", "-Wextra", "-Werror"]
    key = cache.digest(name, source.read_text(), flags, tools.first_line(["gcc", "--version"]))
    return _cached(name, key, lambda out: _compile(["gcc", *flags, "-o", str(out / name), str(source)],
                                                   source.name), out_dir)


# --- the guest -----------------------------------------------------------------------------------

def _sh(machine, script, *args, timeout=600):
    """Run a fixed shell script with args as positional parameters; (code, out, err)."""
    return machine.run(["sh", "-c", script, "sh", *map(str, args)], timeout=timeout)


def prepare_guest(machine, hugepages=64, swap_mib=256):
    """Reserve 2 MiB hugetlb pages, mount debugfs, enable a swap file; returns what was set up.

    Raises GuestError when a piece is missing, rather than letting its cases turn into SKIP.
    """
    code, out, err = _sh(machine, 'echo "$1" > /proc/sys/vm/nr_hugepages || exit 1\n'
                                  'n=$(cat /proc/sys/vm/nr_hugepages)\n'
                                  'if [ "$n" -lt "$1" ]; then echo 1 > /proc/sys/vm/compact_memory;\n'
                                  '  echo "$1" > /proc/sys/vm/nr_hugepages; fi\n'
                                  'cat /proc/sys/vm/nr_hugepages; ls /sys/kernel/mm/hugepages',
                         hugepages)
    if code != 0:
        raise GuestError(f"cannot reserve hugetlb pages (CONFIG_HUGETLBFS off?): {err.strip()}")
    lines = out.split()
    reserved = int(lines[0])
    if reserved < hugepages:
        raise GuestError(f"only {reserved} of {hugepages} 2 MiB hugetlb pages could be reserved")
    sizes = sorted(int(m[1]) for m in map(re.compile(r"hugepages-(\d+)kB").match, lines[1:]) if m)

    code, out, err = _sh(machine, "mountpoint -q /sys/kernel/debug || "
                                  "mount -t debugfs debugfs /sys/kernel/debug || exit 1\n"
                                  "test -e /sys/kernel/debug/gup_test && echo yes || echo no")
    if code != 0:
        raise GuestError(f"cannot mount debugfs (CONFIG_DEBUG_FS off?): {err.strip()}")
    gup_test = out.strip() == "yes"

    code, out, err = _sh(machine, 'set -e\nswapoff "$1" 2>/dev/null || true\nrm -f "$1"\n'
                                  'fallocate -l "$2M" "$1" 2>/dev/null || '
                                  'dd if=/dev/zero of="$1" bs=1M count="$2" status=none\n'
                                  'chmod 600 "$1"\nmkswap "$1" >/dev/null\nswapon "$1"\n'
                                  'cat /proc/swaps', SWAPFILE, swap_mib)
    swap_kib = sum(int(f[2]) for f in (line.split() for line in out.splitlines()[1:]) if len(f) >= 3)
    if code != 0 or swap_kib == 0:
        raise GuestError(f"cannot enable swap on {SWAPFILE}: {(err or out).strip()}")

    code, out, _ = machine.run(["cat", "/sys/kernel/mm/transparent_hugepage/enabled"])
    thp = re.search(r"\[(\w+)\]", out)
    return {"hugepages_2m": reserved, "hugepage_sizes_kb": sizes, "debugfs": True,
            "gup_test": gup_test, "swapfile": SWAPFILE, "swap_kib": swap_kib,
            "thp": thp[1] if code == 0 and thp else None}


def upload(machine, local, remote_dir):
    """Copy one file into remote_dir in the guest; returns its path there."""
    machine.put(local, remote_dir)
    return f"{remote_dir}/{Path(local).name}"


def ways(profile, launcher):
    """(way, launcher) pairs a selftest runs in: plainly, and under the profile's launcher."""
    if launcher is None:
        return [("plain", None)]
    return [("plain", None), (profile.conditions.get("way", profile.name), launcher)]


def _launcher_line(text, launcher):
    name = Path(launcher).name + ":"
    for line in text.replace("\r", "").splitlines():
        if line.startswith(name):
            return line.strip()
    return None


def run_test(machine, binary, launcher=None, timeout=900, label=None, name=None, args=(), way=None,
             on_line=None, script=None):
    """Run a selftest in the guest, plainly or under a feature's launcher; returns a dict.

    binary: a static binary, or a script test's folder (build_test) whose `script` runs from it.

    name: the test's (default: the binary's file name); way: the column's name (default "plain",
    or the launcher's name under one). "active" is None for a plain run, True when the launcher
    proved the feature on ("<launcher>: ... active"), False when it did not: then the test did not
    run and "cases" is empty; that is a failure to turn the feature on, never a result. The test gets `timeout` seconds (coreutils timeout in the guest, exit 124):
    a run cut short keeps the cases it finished. on_line(line) gets each line of its output as
    it comes (what a guest that dies printed is kept: crashed()).
    """
    if Path(binary).is_dir():        # a script test: its folder, the script run from inside it
        where = f"{GUEST_DIR}/{Path(binary).name}"
        machine.put(binary, where)
        argv = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", where, f"./{script}", *map(str, args)]
    else:
        argv = [upload(machine, binary, GUEST_DIR), *map(str, args)]
    if launcher:
        argv = [upload(machine, launcher, GUEST_DIR)] + argv
    started = time.monotonic()
    code, out, err = machine.run(["python3", "-c", PTY_RUN, "timeout", "-k", "10", str(timeout), *argv],
                                 timeout=timeout + 60, on_line=on_line)
    seconds = round(time.monotonic() - started, 1)
    output = out.replace("\r\n", "\n")      # the pty's line ends; a lone \r (progress) stays
    line = _launcher_line(output, launcher) if launcher else None
    active = None
    if launcher:
        active = bool(line and line.endswith(": active"))
    name = name or Path(binary).name
    result = {"kernel": label or machine.kernel.info.get("release"), "test": name,
              "way": way or (Path(launcher).name if launcher else "plain"), "exit_code": code, "active": active,
              "launcher": line, "seconds": seconds,
              "timed_out": code == 124 or (code == 137 and seconds >= timeout),
              "output": output, "stderr": err}
    if launcher and not active:
        why = line or f"no proof line from the launcher (exit code {code})"
        result.update(cases=[], tap=None, error=f"the feature was not turned on: {why}")
        return result
    report = parse_tap_report(output)
    if not report["cases"]:
        report["cases"] = parse_plain(output)
    if not first_test(name):   # one table for all tests: the others' cases carry the test's name
        report["cases"] = [{**c, "case": f"{name}: {c['case']}"} for c in report["cases"]]
    result.update(cases=report["cases"], tap={k: v for k, v in report.items() if k != "cases"},
                  error=None)
    if not report["cases"] and report["skip_all"] is None:
        result["error"] = f"no TAP results (exit code {code})"
    elif died_of(code) and not result["timed_out"]:     # a test that crashed stops short
        result["error"] = (f"killed by {died_of(code)} after {len(report['cases'])} cases"
                           f" (exit code {code})")
    return result


def died_of(code):
    """The signal's name when an exit code (PTY_RUN's 128+N) says a signal ended the test."""
    if code is None or not 128 < code < 128 + signal.NSIG:
        return None
    try:
        return signal.Signals(code - 128).name
    except ValueError:
        return f"signal {code - 128}"


def crashed(name, way, label, output, exc, launcher=None, case=None):
    """The result of a way whose guest died (or could not be reached) while it ran: the cases it
    finished before, and the case it was in (`crashed_in`, also a row of the table)."""
    output = output.replace("\r\n", "\n")
    report = parse_tap_report(output)
    cases = report["cases"] or parse_plain(output)
    case = case or last_started(output, cases)
    if not first_test(name):
        cases = [{**c, "case": f"{name}: {c['case']}"} for c in cases]
        case = f"{name}: {case}"
    line = _launcher_line(output, launcher) if launcher else None
    message = exc.args[0] if exc.args else type(exc).__name__
    return {"kernel": label, "test": name, "way": way, "exit_code": None,
            "active": bool(line and line.endswith(": active")) if launcher else None, "launcher": line,
            "seconds": None, "timed_out": False, "output": output, "stderr": "", "cases": cases,
            "tap": {k: v for k, v in report.items() if k != "cases"}, "crashed": type(exc).__name__,
            "crashed_in": case, "error": f"crashed in: {case} ({message.splitlines()[0]})"}


# --- tables --------------------------------------------------------------------------------------

def table(results):
    """Rows: test case (in run order); columns: (kernel, way); values: pass|fail|skip, "crashed"
    (the guest died in that case), "missing" (the case did not run in that column) or "inactive"
    (the feature was not turned on: no run)."""
    rows, columns, tests = {}, {}, set()
    for res in results:
        col = (res["kernel"], res["way"])
        test = res.get("test", next(iter(catalog())))
        if (col, test) in tests:
            raise UserError(f"two results for kernel '{col[0]}', way '{col[1]}': label them apart")
        tests.add((col, test))
        died = {res["crashed_in"]: "crashed"} if res.get("crashed") else {}
        if res.get("active") is False and not died:
            columns[col] = None
        elif columns.get(col, {}) is not None:     # several tests fill one column
            columns[col] = {**columns.get(col, {}), **{c["case"]: c["result"] for c in res["cases"]}, **died}
        for case in [c["case"] for c in res["cases"]] + list(died):
            rows.setdefault(case, None)
    data = {col: [("inactive" if vals is None else vals.get(case, "missing")) for case in rows]
            for col, vals in columns.items()}
    import pandas as pd                 # loaded where used: the CLI's refusals stay quick
    df = pd.DataFrame(data, index=pd.Index(list(rows), name="case"))
    df.columns = pd.MultiIndex.from_tuples(list(columns), names=["kernel", "way"])
    return df


def new_failures(df, stock=None):
    """Cases that pass on the stock kernel's plain run but fail (or crashed, or went missing) in
    another column: [{"case", "kernel", "way", "result"}]. stock defaults to the first column's kernel."""
    stock = stock or df.columns[0][0]
    if (stock, "plain") not in df.columns:
        raise UserError(f"no plain run of the stock kernel '{stock}' to compare with")
    ref = df[(stock, "plain")]
    found = []
    for col in df.columns:
        if col == (stock, "plain"):
            continue
        for case, value in df[col].items():
            if value == "crashed" or (ref[case] == "pass" and value in ("fail", "missing")):
                found.append({"case": case, "kernel": col[0], "way": col[1], "result": value})
    return found


def render(results, stock=None):
    """The table as text; a leading "!!" marks a case with a new failure against stock."""
    if not results:
        return "(no results)"
    df = table(results)
    stock = stock or df.columns[0][0]
    bad = {f["case"] for f in new_failures(df, stock)} if (stock, "plain") in df.columns else set()
    heads = [f"{k}/{w}" for k, w in df.columns]
    widths = [max(len(h), 8) for h in heads]
    name_w = max([len(c) for c in df.index] + [len("pass/fail/skip")])
    lines = ["   " + "case".ljust(name_w) + "  " + "  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip()]
    for case, row in df.iterrows():
        mark = "!! " if case in bad else "   "
        lines.append(mark + case.ljust(name_w) + "  " + "  ".join(str(v).ljust(w)
                                                                for v, w in zip(row, widths)).rstrip())
    counts = ["/".join(str(int((df[col] == r).sum())) for r in ("pass", "fail", "skip")) for col in df.columns]
    lines.append("   " + "pass/fail/skip".ljust(name_w) + "  "
                 + "  ".join(c.ljust(w) for c, w in zip(counts, widths)).rstrip())
    for res in results:
        if res.get("error"):
            lines.append(f"!! {res['kernel']}/{res['way']}: {res['error']}")
        elif res.get("launcher"):
            lines.append(f"   {res['kernel']}/{res['way']}: {res['launcher']}")
    if bad:
        lines.append(f"!! {len(bad)} case(s) fail against the stock kernel's plain run")
    return "\n".join(lines)
