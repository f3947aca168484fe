"""The source and config the real tests share (see conftest.py)."""
import os

SRC = os.environ.get("HARNESS_TEST_KERNEL_SRC", "debian:linux-source-6.1")
FRAGMENTS = ["guest-base", "selftests"]
CONFIG_ARGS = ["--config", "selftests"]          # FRAGMENTS on the command line (after guest-base)
