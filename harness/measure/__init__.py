"""Stage 3, measuring: the workloads, whether the feature was really on, the kernel log, the kernel's own selftests."""
