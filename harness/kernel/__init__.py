"""Stage 1, the kernel: its source, the patch series, the config fragments, the build (and every patch built in turn, checkpatch)."""
