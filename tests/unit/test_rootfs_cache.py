"""Rootless image pieces (dpkg status, subordinate ids, what is missing) and shared caches."""
import os
import pwd

import pytest

from harness import cache
from harness.guest import image, rootfs
from harness.errors import InfraError


def test_packages_are_read_from_dpkg_status_without_a_chroot(tmp_path):
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text("Package: python3\nStatus: install ok installed\nVersion: 3.11.2-1+b1\n"
                      "Description: x\n more text: with a colon\n\n"
                      "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
                      "Package: dropbear-bin\nStatus: install ok installed\nVersion: 2022.83-1+deb12u1")
    assert rootfs.packages(tmp_path) == {"python3": "3.11.2-1+b1", "dropbear-bin": "2022.83-1+deb12u1"}


def test_subordinate_ids_by_name_or_uid(tmp_path):
    me = pwd.getpwuid(os.geteuid())
    subuid = tmp_path / "subuid"
    subuid.write_text(f"someone:100000:65536\n{me.pw_uid}:165536:65536\n{me.pw_name}:231072:1000\n")
    assert rootfs.subordinate_ids(me.pw_name, subuid) == [(165536, 65536), (231072, 1000)]
    assert rootfs.subordinate_ids(me.pw_name, tmp_path / "none") == []


def test_a_rootless_build_without_its_tools_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(rootfs.tools, "which", lambda tool: None)
    with pytest.raises(InfraError, match=r"'mmdebstrap' is not installed; install it \(Debian package: mmdebstrap\)"):
        rootfs.check_rootless()


def test_an_entry_is_found_in_a_shared_cache_after_ones_own(tmp_path, monkeypatch):
    own, shared = tmp_path / "own", tmp_path / "shared"
    monkeypatch.setenv("HARNESS_CACHE", str(own))
    monkeypatch.setenv("HARNESS_SHARED_CACHE", f"{tmp_path / 'missing'}:{shared}")
    assert cache.find("builds", "k1", "kernel.json") is None
    (shared / "builds/k1").mkdir(parents=True)
    (shared / "builds/k1/kernel.json").write_text("{}")
    assert cache.find("builds", "k1", "kernel.json") == shared / "builds/k1"
    (own / "builds/k1").mkdir(parents=True)
    assert cache.find("builds", "k1", "kernel.json") == shared / "builds/k1"   # no marker: not an entry
    (own / "builds/k1/kernel.json").write_text("{}")
    assert cache.find("builds", "k1", "kernel.json") == own / "builds/k1"
    monkeypatch.setenv("HARNESS_SHARED_CACHE", "")
    assert cache.shared_roots() == []


def test_a_guest_image_in_a_shared_cache_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("HARNESS_SHARED_CACHE", str(tmp_path / "shared"))
    monkeypatch.setenv("HARNESS_DEBIAN_MIRROR", "http://deb.example.org/debian")
    img = image.GuestImage()
    entry = tmp_path / "shared/images" / img.key
    entry.mkdir(parents=True)
    (entry / "image.json").write_text('{"host_key": "ssh-ed25519 AAAA", "recipe": {"init": "/sbin/x"}}')
    found = img.run()
    assert found.path == entry / "rootfs.ext4" and found.host_key == "ssh-ed25519 AAAA"
