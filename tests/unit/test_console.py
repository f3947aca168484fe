import time

from harness.guest import console


def test_scan_finds_panic_and_kvm_errors():
    assert console.scan("ok\nKernel panic - not syncing: VFS: Unable to mount root fs\n")[0] == "kernel panic"
    assert console.scan("KVM internal error. Suberror: 1\n", console.QEMU_FATAL)[0].startswith("KVM internal")
    assert console.scan("a normal boot\nRun /sbin/init as init process\n") is None
    # QEMU-side messages are not looked for on the console, nor panics in QEMU's log
    assert console.scan("KVM internal error. Suberror: 1\n") is None


def test_watcher_sees_a_panic_written_later(tmp_path):
    con, qemu = tmp_path / "console.log", tmp_path / "qemu.log"
    con.write_text("booting\n")
    w = console.Watcher(con, qemu, interval=0.01).start()
    try:
        time.sleep(0.05)
        assert w.fatal is None
        with open(con, "a") as fh:
            fh.write("Kernel panic - not sync")
            fh.flush()
            time.sleep(0.05)
            assert w.fatal is None  # half a line is not judged yet
            fh.write("ing: Attempted to kill init!\n")
        assert w.seen.wait(2)
        assert w.fatal == ("kernel panic", "Kernel panic - not syncing: Attempted to kill init!")
    finally:
        w.stop()


def test_tail(tmp_path):
    log = tmp_path / "l"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert console.tail(log, 3) == "line 97\nline 98\nline 99"
    assert console.tail(tmp_path / "missing") == ""


def test_watcher_times_boot_marks_on_whole_lines_only(tmp_path):
    con, qemu = tmp_path / "console.log", tmp_path / "qemu.log"
    con.write_text("[    0.1] Run /usr/sbin/harness-init as init process\nNot backgr")
    marks = dict(console.BOOT_MARKS, listening=console.re.compile("Not backgrounding"))
    w = console.Watcher(con, qemu, marks=marks)
    w.poll()
    assert set(w.seen_at) == {"console", "init"}
    with open(con, "a") as fh:
        fh.write("ounding\n")
    w.poll()
    assert set(w.seen_at) == {"console", "init", "listening"}
    assert w.seen_at["init"] <= w.seen_at["listening"]
