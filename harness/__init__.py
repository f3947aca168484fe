"""Kernel validation harness: source -> series -> config -> build -> boot -> workloads -> results."""
