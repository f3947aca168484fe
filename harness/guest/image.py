"""Guest images: a vm-images/<name>/ recipe turned into a bootable ext4 image, cached by its hash.

Only Debian's packages go in, through debootstrap (as root) or mmdebstrap in unshare mode (as
any other user; harness/guest/rootfs.py) and the Debian mirror this host's apt already uses (or --mirror). The image has its own SSH host key, made when it is built; the harness pins it,
so the guest channel never accepts an unknown host. That key is in the image file, so an image's
cache entry is its owner's only (folder 0700, files 0600): nobody else on the host can read the
key and answer as the guest.
"""
import json
import os
import re
import shutil
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from harness import cache, paths, safety, tools
from harness.guest import rootfs
from harness.errors import BuildError, UserError

HOST_KEY = "etc/dropbear/dropbear_ed25519_host_key"
OPENSSH_HOST_KEY = "etc/ssh/ssh_host_ed25519_key"


@dataclass
class Image:
    path: Path         # ext4 image file
    info: dict

    @property
    def host_key(self):
        return self.info["host_key"]

    @property
    def init(self):
        return self.info["recipe"].get("init")

    def beside(self, name):
        """A file kept beside the image in its cache entry (a stand-in's kernel, initrd, key)."""
        return self.path.parent / name

    @property
    def ready_line(self):
        """What the guest's SSH server prints on the console once it listens (or None)."""
        return self.info["recipe"].get("ready_line")


def host_mirror(suite):
    """The Debian mirror this host's apt uses for `suite` main, from its sources files."""
    found = []
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.exists() else []:
        for stanza in path.read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith("#"):
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.split()
            if ("deb" in fields.get("types", []) and suite in fields.get("suites", [])
                    and "main" in fields.get("components", [])):
                found += fields.get("uris", [])
    listfile = Path("/etc/apt/sources.list")
    if listfile.exists():
        for line in listfile.read_text().splitlines():
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", line.strip())
            if m and m[2] == suite and "main" in m[3].split():
                found.append(m[1])
    return found[0] if found else None


def set_login_shell(passwd, user, shell):
    """Set user's login shell in a passwd file (the SSH server runs every command through it)."""
    lines = passwd.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        fields = line.rstrip("\n").split(":")
        if fields[0] == user and len(fields) == 7:
            fields[6] = shell
            lines[i] = ":".join(fields) + "\n"
            passwd.write_text("".join(lines))
            return
    raise BuildError(f"no user '{user}' in {passwd}")


def private(entry):
    """An image's cache entry made its owner's only (it holds the guest's private host key)."""
    entry = Path(entry)
    if entry.stat().st_uid != os.getuid():
        return
    entry.chmod(0o700)
    for f in entry.iterdir():
        if f.is_file() and not f.is_symlink():
            f.chmod(0o600)


class GuestImage:
    def __init__(self, name="debian-minimal", mirror=None):
        self.name = name
        self.dir = paths.VM_IMAGES / name
        recipe_file = self.dir / "recipe.toml"
        if not recipe_file.exists():
            known = ", ".join(sorted(p.name for p in paths.VM_IMAGES.iterdir() if p.is_dir()))
            raise UserError(f"no guest image recipe '{name}' (known: {known})")
        self.recipe = tomllib.loads(recipe_file.read_text())
        self.mirror = mirror or os.environ.get("HARNESS_DEBIAN_MIRROR") or host_mirror(self.recipe["suite"])
        files = sorted(p for p in self.dir.rglob("*") if p.is_file())
        self.key = cache.digest(self.name, self.mirror or "",
                                [(str(p.relative_to(self.dir)), p.read_bytes().hex(), os.access(p, os.X_OK))
                                 for p in files])

    def cached(self):
        found = cache.find("images", self.key, "image.json")
        if found:
            private(found)
            return Image(found / "rootfs.ext4", json.loads((found / "image.json").read_text()))
        return None

    def run(self, progress=None):
        say = progress or (lambda msg: None)
        with cache.locked("image", self.key):
            found = self.cached()
            if found:
                say(f"guest image {self.key} is cached")
                return found
            if rootfs.rootless():
                rootfs.check_rootless()
            if not self.mirror:
                raise UserError(f"no Debian mirror for '{self.recipe['suite']}' in this host's apt "
                                f"sources; pass --mirror URL or set HARNESS_DEBIAN_MIRROR")
            with cache.building("images", self.key) as out:
                return self._build(out, say)

    def _build(self, out, say):
        started = time.monotonic()
        root = out / "root"
        log = out / "build.log"
        how = "mmdebstrap, unshare mode" if rootfs.rootless() else "debootstrap"
        say(f"{how}: {self.recipe['suite']} ({self.recipe['variant']}) from {self.mirror}")
        state = rootfs.bootstrap(self.recipe, self.mirror, root, log)
        if self.recipe.get("init_source"):
            self._init(root)
        shell = self.recipe.get("root_shell")
        if shell:
            set_login_shell(root / "etc/passwd", "root", shell)
        extras = machine_extras(self.recipe, self.dir, root, out, log)
        host_key = self._host_key(root, log)
        packages = rootfs.packages(root)
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        for lists in (root / "var/lib/apt/lists").glob("*_Packages"):
            lists.unlink()
        say("making the ext4 image")
        image = out / "rootfs.ext4"
        rootfs.mkfs(root, image, self.recipe["size_mib"], log, state)
        shutil.rmtree(root)
        info = {
            "key": self.key,
            "name": self.name,
            "recipe": self.recipe,
            "mirror": safety.redact(self.mirror),
            "host_key": " ".join(host_key.split()[:2]),
            "packages": packages,
            "built_by": "debootstrap" if state is None else "mmdebstrap --mode=unshare, fakeroot",
            "build_seconds": round(time.monotonic() - started, 1),
            **extras,
        }
        (out / "image.json").write_text(json.dumps(info, indent=2) + "\n")
        private(out)
        return Image(cache.entry("images", self.key) / "rootfs.ext4", info)

    def _init(self, root):
        init = root / self.recipe["init"].lstrip("/")
        proc = tools.run(["gcc", "-O2", "-static", "-Wall", "-Wextra", "-Werror", "-o", str(init),
                          str(self.dir / self.recipe["init_source"])], check=False)
        if proc.returncode != 0:
            raise BuildError(f"the guest init {self.recipe['init_source']} does not compile",
                             log_tail=proc.stderr)

    def _host_key(self, root, log):
        """The image's own SSH host key (made now, so the harness can pin it): dropbear's, or
        OpenSSH's (then the only one the server offers)."""
        if self.recipe.get("ssh_server") == "openssh":
            for old in (root / "etc/ssh").glob("ssh_host_*"):
                old.unlink()
            keyfile = root / OPENSSH_HOST_KEY
            tools.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(keyfile)], log=log)
            keyfile.chmod(0o600)
            return keyfile.with_suffix(".pub").read_text().strip()
        keyfile = root / HOST_KEY
        keyfile.parent.mkdir(parents=True, exist_ok=True)
        keyfile.unlink(missing_ok=True)
        tools.run(["dropbearkey", "-t", "ed25519", "-f", str(keyfile)], log=log)
        keyfile.chmod(0o600)        # the private host key: its owner (root in the guest) only
        pub = tools.run(["dropbearkey", "-y", "-f", str(keyfile)]).stdout
        return next(line for line in pub.splitlines() if line.startswith("ssh-ed25519 "))


def machine_extras(recipe, recipe_dir, root, out, log):
    """What a full-system recipe (a stand-in machine) adds: its overlay files, masked and enabled
    systemd units, stripped folders, root's authorized key (the private half kept in the cache
    entry as client_key) and its own kernel and initrd copied out (vmlinuz, initrd.img); the
    image.json fields that say so."""
    extras = {}
    if recipe.get("overlay"):
        shutil.copytree(recipe_dir / recipe["overlay"], root, dirs_exist_ok=True, symlinks=True)
    units = root / "etc/systemd/system"
    for unit in recipe.get("mask", []):
        (units / unit).unlink(missing_ok=True)
        units.mkdir(parents=True, exist_ok=True)
        (units / unit).symlink_to("/dev/null")
    for unit in recipe.get("enable", []):
        target = "sockets.target.wants" if unit.endswith(".socket") else "multi-user.target.wants"
        link = units / target / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(f"/lib/systemd/system/{unit}")
    for folder in recipe.get("strip", []):
        shutil.rmtree(root / folder, ignore_errors=True)
    if recipe.get("client_key"):
        key = out / "client_key"
        tools.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "harness", "-f", str(key)], log=log)
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        extras["client_key"] = "client_key"
    if recipe.get("boot_files"):
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise BuildError("the recipe asks for boot_files but the image has no /boot/vmlinuz-*")
        release = kernels[-1].name[len("vmlinuz-"):]
        shutil.copy2(kernels[-1], out / "vmlinuz")
        shutil.copy2(root / f"boot/initrd.img-{release}", out / "initrd.img")
        extras["release"] = release
    return extras
