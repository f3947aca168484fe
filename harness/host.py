"""`harness setup`: check this host for the tools the pipeline calls and install what is missing.

The harness needs Debian's packages for building kernels (gcc, make, flex, bison, bc, libelf,
libssl, ccache), for the guest image (debootstrap, e2fsprogs, dropbear-bin for host keys) and for
booting (qemu-system-x86). As root it installs them with apt-get; otherwise it prints the command.
"""
import os
import shutil

from harness import tools, ui
from harness.errors import InfraError

# tool or file checked -> Debian package
NEEDED = {
    "gcc": "gcc",
    "make": "make",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "ccache": "ccache",
    "git": "git",
    "patch": "patch",
    "perl": "perl",
    "xz": "xz-utils",
    "cpio": "cpio",
    "rsync": "rsync",
    "/usr/include/libelf.h": "libelf-dev",
    "/usr/include/openssl/ssl.h": "libssl-dev",
    "debootstrap": "debootstrap",
    # the guest image without root: mmdebstrap in unshare mode, fakeroot for the ext4 image
    "mmdebstrap": "mmdebstrap",
    "fakeroot": "fakeroot",
    "newuidmap": "uidmap",
    "mkfs.ext4": "e2fsprogs",
    "dropbearkey": "dropbear-bin",
    "qemu-system-x86_64": "qemu-system-x86",
    "/usr/share/keyrings/debian-archive-keyring.gpg": "debian-archive-keyring",
    # the remote-runner tests start real SSH servers on loopback
    "/usr/sbin/sshd": "openssh-server",
    # the afl workload compiles its target with afl-cc and sends the host's afl-fuzz to the guest
    "afl-cc": "afl++",
    "afl-fuzz": "afl++",
    "stress-ng": "stress-ng",
    # a tarball's signed checksum file is checked with gpgv; the tests sign one with gpg
    "gpgv": "gpgv",
    "gpg": "gpg",
    # harness lava validates its jobs with LAVA's own schema (lava_common.schemas)
    "/usr/lib/python3/dist-packages/lava_common/schemas/__init__.py": "lava-common",
}


def missing():
    gone = []
    for thing, package in NEEDED.items():
        present = os.path.exists(thing) if thing.startswith("/") else shutil.which(thing)
        if not present and package not in gone:
            gone.append(package)
    return gone


def main(args):
    packages = missing()
    if not packages:
        ui.console.print("all host tools are installed")
        return 0
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if os.geteuid() != 0:
        raise InfraError("missing Debian packages; install them with:\n  sudo " + " ".join(command))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with ui.step(f"apt-get install {' '.join(packages)}"):
        tools.run(["apt-get", "update", "-q"], env=env)
        proc = tools.run(command, env=env, check=False)
    if proc.returncode != 0:
        raise InfraError("apt-get could not install the packages", log_tail=proc.stdout + proc.stderr)
    still = missing()
    if still:
        raise InfraError(f"still missing after apt-get: {', '.join(still)}")
    return 0
