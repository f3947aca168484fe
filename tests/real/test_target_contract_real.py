"""The Target contract (tests/target_contract.py) on Machine: the kernel every real test shares
(Debian's linux-source-6.1, guest-base + selftests) booted once under QEMU for the whole class."""
import pytest

from harness.guest import machine
from tests.target_contract import TargetContract

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def booted(kernel, image, tmp_path_factory):
    m = machine.Machine(kernel, image, tmp_path_factory.mktemp("contract"), accel="tcg", memory_mib=512)
    with m:
        m.wait_ready(timeout=180)
        yield m


class TestMachine(TargetContract):
    owns_kernel = True              # a guest booted for this test: its log and taints are the test's

    @pytest.fixture
    def target(self, booted):
        yield booted
        booted.check()              # the guest outlived the test: no panic, QEMU still there
