"""Around the pipeline for CI: cells (a group of workloads on every kernel), remote runners, merging partial runs, nightly history and junit."""
