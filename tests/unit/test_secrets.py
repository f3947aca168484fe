"""Issue #21: a credential planted in every kind of URL the harness takes is found in no output and
no file it writes (results, cache, crash files), whatever the command does with the URL: refuses
it, fails to fetch it, or prints it in a progress line. Nothing here reaches a network: every URL
names a closed port of this host."""
import json

import pytest

from harness import cli, crash, safety
from tests.conftest import make_fake_tree

SECRET = "S3CRET-tok3n"
PASSWORD = f"{SECRET}-p@ss:w0rd/x"          # '@', ':' and an escaped '/': any character
USERINFO = f"user:{PASSWORD.replace('/', '%2F')}@"
SHA = "a" * 64
TARBALL = f"https://{USERINFO}127.0.0.1:9/linux-6.1.tar.xz#sha256={SHA}"
GIT = f"git+https://{USERINFO}127.0.0.1:9/linux.git#v6.1"
MIRROR = f"https://{USERINFO}127.0.0.1:9/debian"
QUERY = f"https://127.0.0.1:9/linux-6.1.tar.xz?private_token={SECRET}#sha256={SHA}"


@pytest.fixture
def place(tmp_path, monkeypatch):
    for name in ("cache", "results", "inputs"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    monkeypatch.chdir(tmp_path / "inputs")
    make_fake_tree(tmp_path / "linux")
    series = tmp_path / "inputs" / "series"
    series.mkdir()
    (series / "0001-a.patch").write_text("Subject: [PATCH 1/1] a\n\n---\n")
    return tmp_path


def written(root):
    """Every byte under root's results and cache, as text."""
    return {str(p): p.read_bytes().decode(errors="replace") for sub in ("results", "cache")
            for p in (root / sub).rglob("*") if p.is_file() and not p.is_symlink()}


def exported_run(root):
    run = root / "results" / "r1"
    (run / "k").mkdir(parents=True)
    (run / "metadata.json").write_text(json.dumps({"run_id": "r1", "kernels": {"k": {"status": "ok"}}}))
    (run / "k" / "fork-memory.jsonl").write_text(json.dumps({"fork_ns": 5, "boot": 1}) + "\n")
    return str(run)


COMMANDS = {
    "tarball with a password holding @": lambda t: ["build", "--kernel-src", TARBALL],
    "tarball with a token in its query": lambda t: ["build", "--kernel-src", QUERY],
    "git URL in a run": lambda t: ["run", "--kernel-src", GIT, "--boots", "1"],
    "tarball in verify's progress lines": lambda t: ["verify", "--kernel-src", TARBALL, "--series",
                                                     str(t / "inputs" / "series"), "--no-boot"],
    "tarball in attribute's progress lines": lambda t: ["attribute", "--kernel-src", TARBALL, "--series",
                                                        str(t / "inputs" / "series")],
    "mirror of the guest image": lambda t: ["image", "--mirror", MIRROR],
    "mirror refused with a bad setting": lambda t: ["run", "--kernel-src", str(t / "linux"), "--mirror",
                                                    "ftp://" + USERINFO + "host/debian"],
    "tarball refused over http": lambda t: ["run", "--kernel-src", TARBALL.replace("https", "http")],
    "git URL in an experiment file": lambda t: ["run", "--experiment", experiment_file(t)],
    "artifacts URL of an export": lambda t: ["export", exported_run(t), "--artifacts-url",
                                             f"https://{USERINFO}ci.example.org/runs"],
    "selftest source": lambda t: ["verify", "--kernel-src", str(t / "linux"), "--series",
                                  str(t / "inputs" / "series"), "--selftest-source", GIT.split("#")[0]],
    "remote runner's extra flags": lambda t: ["remote", "--experiment", experiment_file(t), "--host",
                                              "ci@runner.invalid", "--", "--kernel-src", TARBALL, "--memory", "1"],
}


def experiment_file(t):
    path = t / "inputs" / "exp.toml"
    path.write_text(f'source = "{GIT}"\n[[kernels]]\nlabel = "a"\n')
    return str(path)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_planted_credential_is_in_no_output_and_no_file(name, place, capfd):
    code = cli.main(COMMANDS[name](place))
    out, err = capfd.readouterr()
    assert code != crash.EXIT_CODE, err
    assert SECRET not in out + err, (out + err)[-2000:]
    leaks = [path for path, text in written(place).items() if SECRET in text]
    assert leaks == []


def test_a_credential_in_an_unexpected_exception_stays_out_of_the_crash_file(place, monkeypatch, capfd):
    from harness.kernel import sources

    def broken(spec, *a, **k):
        raise RuntimeError(f"a bug while fetching {spec}")
    monkeypatch.setattr(sources, "resolve", broken)
    assert cli.main(["build", "--kernel-src", TARBALL]) == crash.EXIT_CODE
    out, err = capfd.readouterr()
    assert SECRET not in out + err
    crashes = list((place / "results" / "crashes").iterdir())
    assert len(crashes) == 1 and "a bug while fetching https://127.0.0.1:9/" in crashes[0].read_text()
    assert [p for p, text in written(place).items() if SECRET in text] == []


@pytest.mark.parametrize("url,shown", [
    ("https://u:p@ss@host/x.tar.xz", "https://host/x.tar.xz"),
    ("git+https://u:a:b@c@host/l.git#v1", "git+https://host/l.git#v1"),
    ("see https://u:t@h/a and https://lore.kernel.org/r/1@gmail.com", "see https://h/a and "
                                                                     "https://lore.kernel.org/r/1@gmail.com"),
    ("https://h/x?access_token=abc&x=1", "https://h/x?access_token=REDACTED&x=1"),
    ("https://u:a/b#c?d@host/x.tar.xz", "https://host/x.tar.xz"),
    ("https://host:8080/r/1@gmail.com", "https://host:8080/r/1@gmail.com"),
    ("'git+https://u:p@h/l.git#v1'", "'git+https://h/l.git#v1'"),
])
def test_redaction_handles_any_password(url, shown):
    assert safety.redact(url) == shown


def test_credentials_are_split_out_for_the_download_header():
    assert safety.split_credentials("https://u:p%40s@h/x") == ("https://h/x", "u", "p@s")
    assert safety.split_credentials("https://h/x") == ("https://h/x", None, None)
