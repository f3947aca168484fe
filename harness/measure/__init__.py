"""Stage 3, measuring: the workloads, whether COW PTE was really on, the kernel log, the kernel's own selftests."""
