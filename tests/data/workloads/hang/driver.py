"""A workload that never returns (fault injection for the harness's tests)."""
import json
import sys
import time

print(json.dumps({"type": "record", "workload": "hang", "started": True}), flush=True)
while True:
    time.sleep(3600)
sys.exit(0)
