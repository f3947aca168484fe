"""What the real tests share: one kernel build per source x config for the whole run.

Every real test that boots Debian's linux-source-6.1 without a series boots the same kernel,
guest-base + selftests (hugetlb, debugfs, gup_test, swap, sysrq): the kernel `harness verify`
builds as its stock kernel and experiments/test-series.toml as its stock one. On the command line
that is `--config selftests`. A cold CI run builds it once; the patched kernels of the test series
are likewise one build (the same fragments).
"""
import pytest

from harness.kernel import kconfig, sources
from harness.kernel.build import Build
from harness.guest.image import GuestImage
from tests.real.kernels import FRAGMENTS, SRC


@pytest.fixture(scope="session")
def source():
    return sources.resolve(SRC)


@pytest.fixture(scope="session")
def kernel(source):
    return Build(source, [kconfig.fragment(f) for f in FRAGMENTS]).run()


@pytest.fixture(scope="session")
def image():
    return GuestImage().run()
