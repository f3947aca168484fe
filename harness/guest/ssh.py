"""The guest channel: SSH (paramiko) to the guest's dropbear through QEMU's loopback-only forward.

Authentication is a key made for this boot only; the guest's host key is pinned (it was made when
the image was built), so nothing else answering on the port is trusted. Commands are argument
lists joined with shlex, never strings pasted together.
"""
import base64
import io
import logging
import os
import select
import shlex
import socket
import sys
import tarfile
import termios
import time
import tty
from pathlib import Path

import paramiko

# paramiko's transport thread prints tracebacks for connections that the harness expects to
# fail while the guest boots; the harness reports failures itself.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

from harness.errors import ChannelLost, GuestError, GuestTimeout


def new_client_key():
    return paramiko.ECDSAKey.generate(bits=256)


def authkey_arg(key):
    """The key as the guest's init reads it from the kernel command line (no spaces there)."""
    return f"harness.authkey={key.get_name()}:{key.get_base64()}"


class SSHChannel:
    """The channel to one guest's SSH server: commands, files in and out, an interactive shell."""

    def __init__(self, port, client_key, host_key, user="root", host="127.0.0.1", probe_timeout=0.5):
        self.host = host            # QEMU's loopback forward; a real machine's address
        self.probe_timeout = probe_timeout  # seconds for the banner (a busy machine's sshd is slower)
        self.port = port
        self.last_error = None      # why the last connection attempt failed (evidence for a timeout)
        self.key = client_key
        self.user = user
        kind, b64 = host_key.split()[:2]
        self.host_key = paramiko.PKey.from_type_string(kind, base64.b64decode(b64))
        self.client = None

    def banner(self, timeout=None):
        """True when the SSH server in the guest answers with its banner. QEMU's forward accepts
        a connection even before the guest listens (then holds or drops it): only the banner
        tells."""
        timeout = timeout or self.probe_timeout
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as s:
                s.settimeout(timeout)
                if s.recv(4) == b"SSH-":
                    return True
                self.last_error = "the port answered without an SSH banner"
                return False
        except OSError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False

    def try_connect(self, timeout=2.0, probe=True):
        """One attempt; False while the guest's SSH server is not up yet. probe: check for the
        server's banner on a plain socket first (quiet, where paramiko would fail noisily)."""
        if probe and not self.banner():
            return False
        client = paramiko.SSHClient()
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        client.get_host_keys().add(name, self.host_key.get_name(), self.host_key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
            # SSH's handshake is a ping-pong of small packets: with Nagle's algorithm each one waits
            # for the peer's delayed ACK (about 60 ms of every connection; paramiko leaves it on)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.connect(self.host, port=self.port, username=self.user, pkey=self.key, sock=sock,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           allow_agent=False, look_for_keys=False)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise GuestError(f"the guest presented an unexpected host key: {exc}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        client.get_transport().set_keepalive(5)
        self.last_error = None
        self.client = client
        return True

    def close(self):
        if self.client:
            self.client.close()
            self.client = None

    def answers(self, timeout=10):
        """True when the guest runs a trivial command within timeout seconds (liveness probe)."""
        try:
            chan = self.client.get_transport().open_session(timeout=timeout)
            chan.exec_command("true")
            deadline = time.monotonic() + timeout
            while not chan.exit_status_ready():
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
            chan.close()
            return True
        except (paramiko.SSHException, OSError, EOFError):
            return False

    def run(self, argv, timeout=600, on_line=None, alive=None, stdin=None, stall=30):
        """Run argv in the guest; returns (exit code, stdout, stderr).

        on_line(line) is called for each stdout line as it arrives (records are stored as they
        come); alive() is called while waiting and may raise (a panic seen on the console). After
        `stall` seconds without output the guest is probed with a second command: a guest that does
        not answer it is a GuestTimeout at once, not at the end of `timeout`.
        """
        command = shlex.join(argv)
        transport = self.client.get_transport() if self.client else None
        if transport is None or not transport.is_active():
            raise ChannelLost(f"no SSH connection to the guest for: {command}")
        try:
            chan = transport.open_session(timeout=30)
            chan.exec_command(command)
            if stdin is not None:
                chan.settimeout(timeout)   # a large upload waits for the guest's window to open
                chan.sendall(stdin)
                chan.shutdown_write()
        except socket.timeout:
            raise GuestTimeout(f"the guest took more than {timeout} s to take the input of: {command}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ChannelLost(f"SSH failed starting '{command}' in the guest: {exc}") from None
        chan.settimeout(0.2)
        out, err, pending = [], [], b""
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while True:
            progressed = False
            try:
                data = chan.recv(65536)
                if data:
                    progressed = True
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        text = line.decode(errors="replace")
                        out.append(text)
                        if on_line:
                            on_line(text)
            except socket.timeout:
                pass
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(65536).decode(errors="replace"))
                progressed = True
            if chan.exit_status_ready() and not chan.recv_ready() and not progressed:
                break
            if alive:
                alive()
            if not transport.is_active():
                raise ChannelLost(f"the SSH connection to the guest dropped during: {command}")
            now = time.monotonic()
            if progressed:
                quiet_since = now
            elif now - quiet_since > stall:
                # a TCG guest on a loaded host may take seconds to start even `true`: the probe
                # waits as long as the stall did (at least 10 s) before calling the guest gone
                if not self.answers(timeout=max(10, stall)):
                    chan.close()
                    raise GuestTimeout(f"the guest stopped answering: no output from '{command}' for "
                                       f"{stall} s and a probe command got no answer")
                quiet_since = time.monotonic()
            if now > deadline:
                chan.close()
                raise GuestTimeout(f"'{command}' did not finish in the guest within {timeout} s")
        if pending:
            out.append(pending.decode(errors="replace"))
            if on_line:
                on_line(out[-1])
        while chan.recv_stderr_ready():
            err.append(chan.recv_stderr(65536).decode(errors="replace"))
        code = chan.recv_exit_status()
        if code == -1 and not transport.is_active():
            # the channel ended because the connection did, not because the command exited
            raise ChannelLost(f"the SSH connection to the guest dropped during: {command}")
        return code, "\n".join(out), "".join(err)

    def put(self, local, remote_dir, alive=None):
        """Copy a file or a folder's contents into remote_dir in the guest (one tar stream)."""
        local = Path(local)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            if local.is_dir():
                for item in sorted(local.iterdir()):
                    tar.add(item, arcname=item.name)
            else:
                tar.add(local, arcname=local.name)
        code, _, err = self.run(["sh", "-c", 'mkdir -p "$1" && tar -x -o -C "$1"', "put", remote_dir],
                                stdin=buf.getvalue(), alive=alive)
        if code != 0:
            raise GuestError(f"cannot copy {local} to {remote_dir} in the guest: {err.strip()}")

    def get(self, remote, local, alive=None):
        """Copy the file `remote` in the guest to `local` here (base64 over the command's output:
        the guest image has no SFTP server)."""
        code, out, err = self.run(["base64", remote], alive=alive)
        if code != 0:
            raise GuestError(f"cannot copy {remote} from the guest: {err.strip()}")
        Path(local).write_bytes(base64.b64decode(out))

    def shell(self, alive=None):
        """An interactive shell over this connection in raw terminal mode; its exit code."""
        chan = self.client.get_transport().open_session()
        size = os.get_terminal_size() if sys.stdin.isatty() else os.terminal_size((80, 24))
        chan.get_pty(term=os.environ.get("TERM", "vt100"), width=size.columns, height=size.lines)
        chan.invoke_shell()
        old = termios.tcgetattr(sys.stdin) if sys.stdin.isatty() else None
        try:
            if old:
                tty.setraw(sys.stdin.fileno())
            while not self._relay(chan, alive):
                pass
        finally:
            if old:
                termios.tcsetattr(sys.stdin, termios.TCSADRAIN, old)
        return chan.recv_exit_status() if chan.exit_status_ready() else 0

    @staticmethod
    def _relay(chan, alive):
        """One round of the shell's traffic each way; True when the shell has ended."""
        ready, _, _ = select.select([chan, sys.stdin], [], [], 0.5)
        if alive:
            alive()
        if chan in ready:
            data = chan.recv(4096)
            if not data:
                return True
            os.write(sys.stdout.fileno(), data)
        if sys.stdin in ready:
            data = os.read(sys.stdin.fileno(), 1024)
            if not data:
                return True
            chan.send(data)
        return chan.exit_status_ready() and not chan.recv_ready()
