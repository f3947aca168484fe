from harness.cli import run

raise SystemExit(run())
