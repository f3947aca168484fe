"""The harness's error hierarchy.

Each error carries a message that says what went wrong and what to do; the CLI prints it once and
exits with the class's code, so scripts and CI can tell a bad request from a broken machine or a
broken kernel.
"""


class HarnessError(Exception):
    exit_code = 1

    def __init__(self, message, log_tail=None):
        super().__init__(message)
        self.log_tail = log_tail

    def __str__(self):
        text = super().__str__()
        if self.log_tail:
            text += "\n--- last lines ---\n" + self.log_tail.rstrip()
        return text


class UserError(HarnessError):
    """The request is wrong: a path that does not exist, an unknown option, a bad experiment."""
    exit_code = 2


class InfraError(HarnessError):
    """This machine cannot do it: a tool is missing, the network is down, the disk is full."""
    exit_code = 3


class BuildError(HarnessError):
    """The kernel (or a workload's C code) failed to compile."""
    exit_code = 4


class GuestError(HarnessError):
    """The guest misbehaved; the message carries the tail of its serial console."""
    exit_code = 5


class GuestPanic(GuestError):
    """The guest kernel panicked (or QEMU reported a fatal accelerator error)."""


class GuestTimeout(GuestError):
    """The guest did not become ready, or a command in it did not finish, in time."""


class ChannelLost(GuestError):
    """The SSH connection to the guest dropped; the guest itself may still be fine."""


class WorkloadError(GuestError):
    """A workload in the guest failed or refused to measure (for example a coarse clock)."""
