"""The booted kernel as every caller sees it: a Target runs commands, copies files in and out,
reads the kernel's log and taint flags, and reconnects after a dropped connection.

Nothing outside a Target touches its channel (harness.guest.ssh today). A target is a channel
plus a way to tell whether the kernel behind it is still alive: `Machine` (harness.guest.machine)
is a QEMU guest reached over SSH whose console is watched for panics. Another channel (a serial
console, vsock) or another kind of target (a real machine over SSH) is another subclass that
sets `channel` and overrides `check`, `settle` and `tail`.
"""
import time

from harness.errors import ChannelLost, GuestTimeout

# /proc/sys/kernel/tainted bits (Documentation/admin-guide/tainted-kernels.rst)
TAINTS = {0: "P proprietary module", 1: "F forced module load", 2: "S unsafe SMP", 3: "R forced rmmod",
          4: "M machine check", 5: "B bad page", 6: "U user request", 7: "D died (oops/BUG)",
          8: "A ACPI table override", 9: "W warning", 10: "C staging", 11: "I firmware bug",
          12: "O out-of-tree module", 13: "E unsigned module", 14: "L soft lockup", 15: "K live patch",
          16: "X auxiliary", 17: "T randstruct", 18: "N test"}


def taint_flags(value):
    value = int(value)
    return [name for bit, name in TAINTS.items() if value & (1 << bit)]


class Target:
    """The interface; the channel must offer run, put, get, shell, try_connect and close."""

    def __init__(self, stall=30):
        self.channel = None
        self.stall = stall          # seconds without output before the target is probed
        self.taints_reported = set()

    # --- what a subclass says about the kernel behind the channel ------------------------------

    def check(self):
        """Raise a GuestError if the kernel is gone (a panic, QEMU exited); called in every wait."""

    def settle(self, seconds=3):
        """Watch for a moment; raise if the kernel died (a panic shows a moment after the
        connection or the command that caused it broke)."""

    def tail(self, lines=30):
        """The end of the target's console, for error messages."""
        return ""

    def boot_facts(self):
        """What this kind of target records about a boot besides the common facts."""
        return {}

    def console_mark(self):
        """Where the console is now (death_evidence(mark) reads what comes after it)."""
        return 0

    def death_evidence(self, since=0):
        """What the kernel printed as it died after `since` (a console_mark), for the record."""
        return self.tail()

    # --- the interface ---------------------------------------------------------------------------

    def run(self, argv, timeout=600, on_line=None, stdin=None):
        """(exit code, stdout, stderr) of argv run in the target."""
        try:
            return self.channel.run(argv, timeout=timeout, on_line=on_line, alive=self.check,
                                    stdin=stdin, stall=self.stall)
        except ChannelLost:
            # A kernel that panics drops the connection a moment before the console shows why:
            # look before calling it a network fault.
            self.settle()
            raise

    def put(self, local, remote_dir):
        """Copy a file, or a folder's contents, into remote_dir in the target."""
        self.channel.put(local, remote_dir, alive=self.check)

    def get(self, remote, local):
        """Copy the file `remote` in the target to the path `local` here."""
        self.channel.get(remote, local, alive=self.check)

    def shell(self):
        """An interactive shell in the target on this terminal; its exit code."""
        return self.channel.shell(alive=self.check)

    def kernel_log(self):
        """The kernel's log since the last call (read and cleared)."""
        return self.run(["dmesg", "--read-clear"])[1]

    def new_taints(self):
        """The kernel's taint flags set since the last call (a taint stays for the rest of the
        boot: only the first look after it is set reports it)."""
        _, tainted, _ = self.run(["cat", "/proc/sys/kernel/tainted"])
        flags = taint_flags(tainted.strip() or 0)
        new = [t for t in flags if t not in self.taints_reported]
        self.taints_reported.update(flags)
        return new

    def reconnect(self, timeout=60):
        """A new connection after the old one dropped (the kernel kept running)."""
        self.channel.close()
        deadline = time.monotonic() + timeout
        while not self.channel.try_connect(timeout=2.0):
            self.check()
            if time.monotonic() > deadline:
                raise GuestTimeout(f"cannot reconnect to the target within {timeout} s", log_tail=self.tail())
            time.sleep(0.1)

    def close(self):
        if self.channel:
            self.channel.close()
