"""A workload that taints the kernel (fault injection for the harness's tests): root may add
taint flags through /proc/sys/kernel/tainted; 512 is W, what a WARN() sets."""
import json

with open("/proc/sys/kernel/tainted", "w") as fh:
    fh.write("512\n")
print(json.dumps({"type": "record", "workload": "taint", "tainted": True}), flush=True)
