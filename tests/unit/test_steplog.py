"""Progress in a log (stderr not a terminal): step lines, heartbeats, CI groups, --quiet."""
import os
import time

import pytest

from harness.kernel import build
from harness import cli, steplog, ui


@pytest.fixture
def lines(monkeypatch):
    monkeypatch.setenv("HARNESS_HEARTBEAT", "0.2")
    return []


def test_a_long_step_writes_start_heartbeats_with_what_it_watches_and_end(lines):
    ticks = iter(range(1, 100))
    with steplog.step("[stock] build 6.1", lines.append) as say:
        say("building bzImage")
        steplog.watch(lambda: f"{next(ticks)} build steps")
        steplog.set_context("2 boots done")
        time.sleep(0.75)
    steplog.set_context("")
    assert lines[0] == "▶ [stock] build 6.1"
    beats = lines[1:-1]
    assert len(beats) >= 2
    assert all(b.startswith("… [stock] build 6.1: 0 s; building bzImage; ") for b in beats)
    assert beats[0].endswith("1 build steps; 2 boots done") and "2 build steps" in beats[1]
    assert lines[-1].startswith("✓ [stock] build 6.1 (0.") and lines[-1].endswith(" — building bzImage")


def test_a_failed_step_ends_with_a_cross_and_a_broken_watcher_is_only_a_note(lines):
    with pytest.raises(RuntimeError):
        with steplog.step("boot", lines.append):
            steplog.watch(lambda: 1 / 0)
            time.sleep(0.3)
            raise RuntimeError("panic")
    assert "(watch failed: division by zero)" in lines[1]
    assert lines[-1].startswith("✗ boot (")


def test_only_the_innermost_step_beats_and_groups_are_outermost_steps(lines):
    with steplog.step("outer", lines.append, "github"):
        with steplog.step("inner", lines.append, "github"):
            time.sleep(0.5)
    assert lines[0] == "::group::▶ outer" and lines[1] == "▶ inner"
    assert all(line.startswith("… inner") for line in lines[2:-3])
    assert lines[-3].startswith("✓ inner") and lines[-2] == "::endgroup::"
    assert lines[-1].startswith("✓ outer")


def test_gitlab_sections_and_which_ci_system():
    lines = []
    with steplog.step("apply 2 patches", lines.append, "gitlab"):
        pass
    assert lines[0].startswith("\x1b[0Ksection_start:") and "apply_2_patches[collapsed=true]\r" in lines[0]
    assert lines[1].startswith("\x1b[0Ksection_end:") and "apply_2_patches\r" in lines[1]
    assert steplog.ci_system({"GITHUB_ACTIONS": "true"}) == "github"
    assert steplog.ci_system({"GITLAB_CI": "true"}) == "gitlab"
    assert steplog.ci_system({}) is None


def test_the_build_watcher_counts_new_objects(tmp_path):
    (tmp_path / "mm").mkdir()
    old = tmp_path / "mm" / "old.o"
    old.write_text("")
    os.utime(old, (1000, 1000))
    assert build.progress_of(tmp_path, time.time() - 5) is None
    (tmp_path / "mm" / "memory.o").write_text("")
    (tmp_path / "mm" / ".memory.o.cmd").write_text("")
    (tmp_path / "kernel").mkdir()
    newest = tmp_path / "kernel" / "fork.o"
    newest.write_text("")
    os.utime(newest, (time.time() + 1, time.time() + 1))
    assert build.progress_of(tmp_path, time.time() - 5) == "2 objects built, latest kernel/fork.o"


def test_cli_in_a_log_prints_step_lines_and_quiet_prints_none(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    run = tmp_path / "r1"
    run.mkdir()
    (run / "metadata.json").write_text('{"run_id": "r1", "kernels": {}}')
    assert cli.main(["report", str(run)]) == 0
    assert "report:" in capsys.readouterr().err
    with ui.step("a step") as say:
        say("noted")
    err = capsys.readouterr().err
    assert "▶ a step\n" in err and "✓ a step (" in err and "— noted" in err
    try:
        assert cli.main(["report", str(run), "--quiet"]) == 0
        with ui.step("a step"):
            ui.warn("still said")
        err = capsys.readouterr().err
        assert "report:" not in err and "a step" not in err and "WARNING: still said" in err
    finally:
        ui.set_quiet(False)
