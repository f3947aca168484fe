"""The guest image's root file system, with root or without.

As root: debootstrap into a folder, then mkfs.ext4 -d. As any other user: mmdebstrap in unshare
mode (a user namespace, the user's subordinate ids from /etc/subuid) writes the system as a tarball
whose files keep their owners; fakeroot unpacks it and remembers those owners (and device nodes)
in a state file, and mkfs.ext4 -d runs under the same fakeroot state, so the image holds root-owned
files although no step ran as root. Files the harness adds afterwards (the init, the SSH host key)
belong to the user and appear to fakeroot, and so in the image, as root's.
"""
import os
import pwd
from pathlib import Path

from harness import tools
from harness.errors import InfraError

ROOTLESS_TOOLS = ("mmdebstrap", "fakeroot", "newuidmap", "newgidmap")
MERGED_USR = "/usr/share/mmdebstrap/hooks/merged-usr"


def rootless():
    return os.geteuid() != 0


def subordinate_ids(user, path):
    """The user's ranges in /etc/subuid or /etc/subgid (by name or uid)."""
    entry = pwd.getpwnam(user)
    found = []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            fields = line.strip().split(":")
            if len(fields) == 3 and fields[0] in (user, str(entry.pw_uid)):
                found.append((int(fields[1]), int(fields[2])))
    return found


def check_rootless():
    """Everything a rootless image build needs, or one InfraError that says what to do."""
    for tool in ROOTLESS_TOOLS:
        tools.require(tool)
    user = pwd.getpwuid(os.geteuid()).pw_name
    for path in ("/etc/subuid", "/etc/subgid"):
        if not any(count >= 65536 for _, count in subordinate_ids(user, path)):
            raise InfraError(f"building the guest image without root needs subordinate ids for "
                             f"'{user}' in {path} (useradd adds them; or: sudo usermod "
                             f"--add-subuids 100000-165535 --add-subgids 100000-165535 {user}), "
                             f"or an image built once by root into a shared cache "
                             f"(HARNESS_SHARED_CACHE)")


def bootstrap(recipe, mirror, root, log):
    """Install the recipe's Debian system into the folder root; returns the fakeroot state file
    the later steps must use (None as root)."""
    argv_args = [f"--variant={recipe['variant']}", f"--include={','.join(recipe['packages'])}"]
    if not rootless():
        proc = tools.run(["debootstrap", *argv_args, recipe["suite"], str(root), mirror],
                         log=log, check=False)
        if proc.returncode != 0:
            raise InfraError("debootstrap failed", log_tail=tail(log))
        return None
    tarball = root.with_name("rootfs.tar")
    # merged /usr as debootstrap makes it (symlinks), without the usrmerge package and its perl
    hooks = [f"--hook-dir={MERGED_USR}"] if Path(MERGED_USR).is_dir() else []
    proc = tools.run(["mmdebstrap", "--mode=unshare", *hooks, *argv_args, "--format=tar",
                      recipe["suite"], str(tarball), mirror], log=log, check=False)
    if proc.returncode != 0:
        raise InfraError("mmdebstrap (unshare mode) failed", log_tail=tail(log))
    state = root.with_name("fakeroot.state")
    root.mkdir()
    state.touch()
    tools.run(["fakeroot", "-i", str(state), "-s", str(state), "--", tools.require("tar"), "-xpf",
               str(tarball), "-C", str(root)], log=log)
    tarball.unlink()
    return state


def mkfs(root, image, size_mib, log, state=None):
    argv = [tools.require("mkfs.ext4"), "-q", "-F", "-L", "harness-root", "-d", str(root), str(image), f"{size_mib}M"]
    if state is not None:
        argv = ["fakeroot", "-i", str(state), "--", *argv]
    tools.run(argv, log=log)


def packages(root):
    """{package: version} installed in root, from dpkg's status file (no chroot needed)."""
    found, fields = {}, {}
    status = Path(root) / "var/lib/dpkg/status"
    for line in status.read_text(errors="replace").splitlines() + [""]:
        if not line.strip():
            if fields.get("Status", "").endswith(" installed") and "Package" in fields:
                found[fields["Package"]] = fields.get("Version", "")
            fields = {}
        elif not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return found


def tail(log, lines=15):
    path = Path(log)
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
