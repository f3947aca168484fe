"""The pipeline's parts: `harness boot` honours every flag it takes (or does not take it), every
Machine comes from the guest factory with all of the experiment's guest settings, and Run is
put together from services, never subclassed."""
import ast
from pathlib import Path

import pytest

from harness import cli, paths
from harness.guest.factory import Guests
from harness.results import NullStore

# what `harness boot` does with each flag it takes: the build's (harness.kernel.prepare.Kernels)
# and the guest's (harness.guest.factory.Guests)
BOOT_HONOURS = {"kernel_src", "series", "config", "jobs", "insecure_download", "base",
                "accel", "timing", "memory_mib", "cpus", "image", "mirror", "boot_timeout", "stall_s",
                "pin", "extra_cmdline", "prealloc", "command", "quiet", "put",   # put: commands.boot
                "machine", "identity", "known_hosts", "console"}     # Guests hands these to RemoteGuests


def boot_flags():
    sub = next(a for a in cli.parser()._actions if a.dest == "cmd")
    return {a.dest: a.option_strings for a in sub.choices["boot"]._actions if a.dest != "help"}


def test_boot_takes_only_the_flags_it_honours():
    assert set(boot_flags()) == BOOT_HONOURS


@pytest.mark.parametrize("flag", ["--boots", "--order", "--until-ci", "--variants", "--dmesg-check",
                                  "--selftest-source", "--seed", "--max-boots"])
def test_boot_refuses_what_it_cannot_honour(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parser().parse_args(["boot", "--kernel-src", "/x", flag, "1"])
    assert exc.value.code == 2
    assert f"unrecognized arguments: {flag}" in capsys.readouterr().err


class Recorded(NullStore):
    def __init__(self):
        super().__init__()
        self.metadata.update(accel="tcg", timing="real")        # chosen already: no probe


def test_the_factory_gives_boots_machine_every_guest_setting(tmp_path):
    exp = cli.experiment(cli.parser().parse_args(
        ["boot", "--kernel-src", "/x", "--pin", "0", "--no-prealloc", "--memory", "512", "--cpus", "1",
         "--cmdline", "quiet", "--stall", "9"]))
    guests = Guests(exp, Recorded(), image=object())     # the guest image: here a stand-in
    kernel = object()
    m = guests.machine(kernel, tmp_path)
    assert (m.pin, m.prealloc, m.memory_mib, m.cpus, m.extra_cmdline, m.stall, m.accel) == \
        ("0", False, 512, 1, "quiet", 9, "tcg")
    assert m.kernel is kernel and m.image is guests.image and m.logdir == tmp_path
    default = Guests(cli.experiment(cli.parser().parse_args(["boot", "--kernel-src", "/x"])), Recorded(),
                     image=object())
    m = default.machine(kernel, tmp_path)
    assert (m.pin, m.prealloc, m.memory_mib) == (None, True, 3072)


def test_icount_timing_gives_the_icount_machine(tmp_path):
    store = Recorded()
    store.metadata.update(timing="icount")
    exp = cli.experiment(cli.parser().parse_args(["boot", "--kernel-src", "/x", "--timing", "icount"]))
    guests = Guests(exp, store, image=object())
    assert guests.machine(object(), tmp_path).accel == "icount"


def harness_modules():
    return sorted((paths.ROOT / "harness").rglob("*.py"))


def test_machines_are_made_by_the_factory_only():
    makers = [p.relative_to(paths.ROOT).as_posix() for p in harness_modules()
              if any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "Machine"
                     for n in ast.walk(ast.parse(p.read_text())))]
    assert makers == ["harness/guest/factory.py"]


def test_nothing_subclasses_run_and_the_pipeline_stays_small():
    for path in harness_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", None)) for b in node.bases}
                assert "Run" not in bases, f"{path}: {node.name} subclasses Run"
    assert len(Path(paths.ROOT / "harness" / "pipeline.py").read_text().splitlines()) < 250
