"""The one way unit tests make a run folder: through the harness's own writer (harness.results.
RunStore: metadata.json as a run writes it, records appended by its appender), so a fake run has
the shape docs/results.md gives a real one (tests/results_doc.py checks it)."""
from harness.results import RunStore


def build(root, run_id="run", kernels=(), records=None, **fields):
    """A run folder root/run_id.

    kernels: {label: the kernel's fields} (status "ok" unless given); records: {(label, workload):
    [record, ...]}, each appended as the pipeline appends one; fields: metadata.json's own fields
    (accel "tcg" and timing "real" unless given; run_id, started, harness_sha, host written by
    RunStore). Returns the folder."""
    store = RunStore(run_id, root=root)
    store.update(**{"accel": "tcg", "timing": "real", **fields})
    for label, info in dict(kernels).items():
        store.update_kernel(label, **{"status": "ok", **info})
    for (label, workload), recs in (records or {}).items():
        append = store.appender(label, workload)
        for rec in recs:
            append(rec)
    return store.dir
