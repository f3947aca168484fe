"""The Target contract (tests/target_contract.py) on a Target reached over the harness's SSH
channel: an OpenSSH server started on 127.0.0.1 for this module, with its own host key (pinned)
and a key made for this run only. Skipped where no sshd is installed."""
import getpass
import os
import shutil
import socket
import subprocess
import time

import pytest

from harness.guest import ssh
from harness.guest.target import Target
from tests.target_contract import TargetContract


def sshd_binary():
    found = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.path.exists(p)), None)
    if not found:
        pytest.skip("no OpenSSH server (sshd) on this host")
    return found


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """(port, client key, host key line) of an sshd on 127.0.0.1 that lets this key in."""
    binary, tmp = sshd_binary(), tmp_path_factory.mktemp("sshd")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "host_key")], check=True)
    key = ssh.new_client_key()
    (tmp / "authorized_keys").write_text(f"{key.get_name()} {key.get_base64()}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\n"
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nPidFile {tmp / 'sshd.pid'}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)     # its privilege separation folder
    with open(tmp / "sshd.log", "w") as log:
        proc = subprocess.Popen([binary, "-D", "-e", "-f", str(tmp / "sshd_config")], stdout=log, stderr=log)
    try:
        channel = ssh.SSHChannel(port, key, (tmp / "host_key.pub").read_text(), user=getpass.getuser())
        deadline = time.monotonic() + 20
        while not channel.banner():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp / "sshd.log").read_text()
            time.sleep(0.05)
        yield port, key, (tmp / "host_key.pub").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def connected(sshd):
    port, key, host_key = sshd
    t = Target(stall=30)
    t.channel = ssh.SSHChannel(port, key, host_key, user=getpass.getuser())
    t.reconnect(timeout=60)         # attempts until the server answers (a loaded host is slow to)
    yield t
    t.close()


class TestTargetOverSSH(TargetContract):
    owns_kernel = False             # this host's kernel: its log is not the test's to clear

    @pytest.fixture
    def target(self, connected):
        return connected


def test_a_server_with_another_host_key_is_refused(sshd, tmp_path):
    """The channel pins the host key: the right server under a key it does not expect is an error."""
    port, key, _ = sshd
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    channel = ssh.SSHChannel(port, key, (tmp_path / "other.pub").read_text(), user=getpass.getuser())
    with pytest.raises(ssh.GuestError, match="unexpected host key"):
        channel.try_connect(timeout=5)
