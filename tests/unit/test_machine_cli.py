from pathlib import Path

import pytest

from harness.guest import arch, image, machine
from harness import cli
from harness.errors import BuildError, InfraError


def test_qemu_argv_is_loopback_only_and_snapshot():
    a = arch.load()
    argv = machine.qemu_argv(a, "tcg", "/k/bzImage", "console=ttyS0", Path("/logs"), 3072, 2,
                             disk="/img/rootfs.ext4", port=2222)
    joined = " ".join(argv)
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in joined and "restrict=on" in joined
    assert "snapshot=on" in joined and "-nodefaults" in argv and "-no-reboot" in argv
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi"
    assert argv[argv.index("-append") + 1] == "console=ttyS0"
    assert "memory-backend-ram,id=ram0,size=3072M,prealloc=on" in argv      # RAM faulted in first
    lazy = machine.qemu_argv(a, "tcg", "/k/bzImage", "", Path("/logs"), 3072, 2, prealloc=False)
    assert not any("memory-backend" in x for x in lazy)


def test_missing_qemu_is_an_infra_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    kernel = type("K", (), {"image": tmp_path / "bzImage"})()
    img = type("I", (), {"path": tmp_path / "x", "init": "/init", "host_key": "ssh-ed25519 AAAA"})()
    with pytest.raises(InfraError, match="qemu-system-x86_64' is not installed.*qemu-system-x86"):
        machine.Machine(kernel, img, tmp_path).start()


def test_the_wait_for_qemus_port_grows_with_the_preallocated_memory(monkeypatch, tmp_path):
    """QEMU answers on its monitor once it has faulted the guest's RAM in: 3 GiB on a starved
    host took over 120 s, so the bound is 120 s and 60 s per GiB preallocated."""
    asked = []
    monkeypatch.setattr(machine, "learn_port", lambda mon, check, where, timeout: asked.append(timeout))
    kernel = type("K", (), {"image": tmp_path / "bzImage"})()
    for mib, prealloc in ((3072, True), (1024, True), (3072, False)):
        machine.Machine(kernel, None, tmp_path, memory_mib=mib, prealloc=prealloc).learn_port(tmp_path / "m")
    assert asked == [300, 180, 120]


def test_host_mirror_reads_deb822(tmp_path, monkeypatch):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "x.sources").write_text("Types: deb\nURIs: http://mirror.test/debian\nSuites: bookworm "
                                 "bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://"
                                 "sec.test/\nSuites: bookworm-security\nComponents: main\n")
    real = Path

    def fake(p, *rest):
        if p == "/etc/apt/sources.list.d":
            return d
        if p == "/etc/apt/sources.list":
            return tmp_path / "none"
        return real(p, *rest)
    monkeypatch.setattr(image, "Path", fake)
    assert image.host_mirror("bookworm") == "http://mirror.test/debian"
    assert image.host_mirror("trixie") is None


@pytest.mark.parametrize("argv,code,message", [
    (["run", "--kernel-src", "/does/not/exist"], 2, "does not exist"),
    (["run", "--kernel-src", "/tmp"], 2, "not a Linux kernel tree"),
    (["run", "--kernel-src", "/tmp", "--param", "oops"], 2, "NAME=VALUE"),
    (["run", "--kernel-src", "/tmp", "--workload", "nope"], 2, "unknown workload"),
    (["run", "--kernel-src", "/tmp", "--config", "nope"], 2, "config fragment 'nope' not found"),
    (["build", "--kernel-src", "/does/not/exist"], 2, "does not exist"),
    (["run", "--kernel-src", "/tmp", "--boots", "0"], 2, "boots must be a whole number of at least 1"),
    (["run", "--kernel-src", "/tmp", "--until-ci", "2"], 2, "until must be a fraction between 0 and 1"),
    (["run", "--kernel-src", "/tmp", "--until-ci", "0.01", "--max-boots", "0"], 2, "max_boots must be"),
    (["calibrate"], 2, "name a kernel with --kernel-src"),
    (["calibrate", "--analyse", "/does/not/exist"], 2, "is not a run"),
])
def test_cli_bad_input_one_clear_error(argv, code, message, capsys, cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_workload_flags_round_trip_through_the_reproducer_command():
    import shlex
    p = cli.parser()
    args = p.parse_args(["run", "--kernel-src", "/x", "--workload", "fork-latency", "--param", "sizes_mib=0,64",
                         "--param", "cow_pte=0", "--param", "cow_pte=1", "--workload", "fork-memory",
                         "--param", "mib=64"])
    exp = cli.experiment(args)
    assert [(w.name, w.params) for w in exp.workloads] == [
        ("fork-latency", {"sizes_mib": "0,64", "cow_pte": "0"}),
        ("fork-latency", {"sizes_mib": "0,64", "cow_pte": "1"}),
        ("fork-memory", {"mib": "64"})]
    again = cli.experiment(p.parse_args(shlex.split(exp.command_line())[1:]))
    assert [(w.name, w.params) for w in again.workloads] == [(w.name, w.params) for w in exp.workloads]
    # --param before any --workload belongs to the default workload
    default = cli.experiment(p.parse_args(["run", "--kernel-src", "/x", "--param", "mib=32"]))
    assert [(w.name, w.params) for w in default.workloads] == [("fork-memory", {"mib": "32"})]


def test_resume_takes_nothing_else(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    assert cli.main(["run", "--resume", "x", "--kernel-src", "/y"]) == 2
    assert "name nothing else" in capsys.readouterr().err


def test_icount_with_kvm_is_refused_before_building(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    assert cli.main(["run", "--kernel-src", "/tmp", "--accel", "kvm", "--timing", "icount"]) == 2
    assert "cannot go with --accel kvm" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_pin_is_kept_in_the_reproducer_command():
    p = cli.parser()
    exp = cli.experiment(p.parse_args(["run", "--kernel-src", "/x", "--pin", "2-3"]))
    assert exp.pin == "2-3" and "--pin 2-3" in exp.command_line()


def test_login_shell_is_set_in_passwd(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    image.set_login_shell(passwd, "root", "/bin/sh")
    assert passwd.read_text() == ("root:x:0:0:root:/root:/bin/sh\n"
                                  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    with pytest.raises(BuildError):
        image.set_login_shell(passwd, "nobody", "/bin/sh")


def test_clock_args_give_tsc_rate_and_loops_per_jiffy():
    assert machine.clock_args(2600000, 250) == "tsc_early_khz=2600000 lpj=10400000"
    assert machine.clock_args(1000000, 1000) == "tsc_early_khz=1000000 lpj=1000000"
    assert machine.clock_args(2600000, None) == "tsc_early_khz=2600000"   # no CONFIG_HZ: no lpj
    assert machine.clock_args(None, 250) == ""                            # KVM: the kernel measures


def test_python_tools_are_found_beside_the_harness_interpreter(monkeypatch, tmp_path):
    """tuxmake and b4 live in the harness's own virtualenv, whose bin/ need not be on PATH."""
    import sys
    from harness import tools
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text("")
    tool = venv_bin / "tuxmake"
    tool.write_text("#!/bin/sh\necho tuxmake 9.9\n")
    tool.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert tools.require("tuxmake") == str(tool)
    assert tools.first_line(["tuxmake", "--version"]) == "tuxmake 9.9"
    with pytest.raises(InfraError, match="'b4' is not installed"):
        tools.require("b4")


def test_a_bad_design_in_an_experiment_file_is_one_clear_error(tmp_path, capsys):
    exp = tmp_path / "bad.toml"
    exp.write_text('source = "/tmp"\n[design]\nboots = "abc"\n[[kernels]]\nlabel = "a"\n')
    assert cli.main(["run", "--experiment", str(exp)]) == 2
    err = capsys.readouterr().err
    assert "boots must be a whole number" in err and "Traceback" not in err
    exp.write_text('source = "/tmp"\n[design]\nrounds = 3\n[[kernels]]\nlabel = "a"\n')
    assert cli.main(["run", "--experiment", str(exp)]) == 2
    assert "[design]: unknown key 'rounds'" in capsys.readouterr().err
