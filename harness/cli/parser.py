"""The `harness` command line: every subcommand and its flags."""
import argparse

from harness.cli import subcommands as sc
from harness.cli.flags import (add_command_options, add_guest_args, add_kernel_args, add_options,
                                add_verdict_args, add_workload_args)

EPILOG = """kernel source specs (--kernel-src):
  PATH                          a local kernel tree (git checkout or plain folder; built out of tree)
  debian:linux-source-6.1       Debian's kernel source package (installed with apt when missing)
  https://.../linux-6.2.tar.xz  a release tarball; append #sha256=HEX to pin it
  git+URL#REF                   a git repository at a tag, branch or commit

examples:
  harness run --kernel-src debian:linux-source-6.1
  harness run --experiment test-series --kernel-src debian:linux-source-6.1
  harness run --kernel-src ~/linux --workload fork-memory --param mib=512 --param repeat=5
  harness boot --kernel-src debian:linux-source-6.1 -- cat /proc/meminfo
  harness build --kernel-src ~/linux --config debug
"""



def parser():
    ap = argparse.ArgumentParser(
        prog="harness", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Build Linux kernels (and patch series), boot them under QEMU, run workloads "
                    "in the guest and compare what they do to memory and latency.")
    ap.add_argument("--quiet", "-q", action="store_true",
                    help="no progress lines (for scripts): warnings, errors and results only")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    add_machine_commands(sub)
    add_run_commands(sub)
    add_attribute_command(sub)
    add_measure_commands(sub)
    add_results_commands(sub)
    add_fleet_commands(sub)
    for p in sub.choices.values():       # --quiet after the command too (harness run --quiet ...)
        p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                       help="no progress lines (for scripts): warnings, errors and results only")
    return ap


def experiment_command(sub, name, summary, experiment_help):
    """A subcommand that takes an experiment: its kernels, guest and design flags, --experiment."""
    p = sub.add_parser(name, help=summary, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p, multiple=True)
    add_guest_args(p)
    p.add_argument("--experiment", metavar="NAME|PATH", help=experiment_help)
    return p


def add_machine_commands(sub):
    """The subcommands setup, build, image and boot."""
    p = sub.add_parser("setup", help="install the Debian packages the harness needs (as root)")
    p.set_defaults(func=sc.cmd_setup)

    p = sub.add_parser("build", help="build a kernel, with a patch series if given (cached)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p)
    p.add_argument("--variants", type=int, metavar="N",
                   help="build N layout variants (the same code placed differently, one after the other)")
    p.set_defaults(func=sc.cmd_build)

    p = sub.add_parser("image", help="build the guest image (cached)")
    p.add_argument("--image", default="debian-minimal")
    p.add_argument("--mirror")
    p.set_defaults(func=sc.cmd_image)

    p = sub.add_parser("standin", help="boot the stand-in machine (a full Debian under QEMU) and print "
                       "the --machine flags that make it a run's target; until Ctrl-C")
    p.add_argument("--memory", type=int, default=1024, metavar="MIB", help="its memory (default 1024)")
    p.add_argument("--accel", choices=("tcg", "kvm"), default="tcg", help="QEMU's accelerator (default tcg)")
    p.add_argument("--logs", metavar="DIR", help="its console log and known_hosts (default: a new temporary folder)")
    p.set_defaults(func=sc.cmd_standin)

    p = sub.add_parser("boot", help="boot a kernel: a shell in the guest, or one command after --",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p)
    # the guest's settings, each honoured (harness.guest.factory); no design flags (one boot) and
    # no --dmesg-check (nothing is judged): boot does not take them
    add_options(p, ["guest"], leave_out=("dmesg_check",))
    p.add_argument("--put", metavar="PATH", action="append", default=[],
                   help="copy a file or folder into the guest's home folder before the command or "
                        "shell (e.g. a reproducer); repeatable")
    p.add_argument("command", nargs="*", help="command to run in the guest (after --)")
    p.set_defaults(func=sc.cmd_boot)


def add_run_commands(sub):
    """The subcommands run and verify."""
    p = experiment_command(sub, "run", "build, boot and run workloads; prints tables, stores results",
                           "an experiment file (experiments/NAME.toml): kernels, series, workloads; "
                           "--kernel-src and --series override its source and series")
    p.add_argument("--label", action="append", help="name of each kernel in results (in order)")
    p.add_argument("--cell", action="append", metavar="ID",
                   help="run only this cell of the experiment: a group of workloads, on every "
                        "kernel (see `harness cells`); repeatable")
    p.add_argument("--resume", metavar="RUN",
                   help="continue an interrupted run (folder or id): finished kernels are kept")
    add_workload_args(p)
    p.set_defaults(func=sc.cmd_run)

    p = sub.add_parser("verify", help="a reviewer's checks of a series: apply, checkpatch, every "
                       "patch built, kernels booted with workloads, dmesg and selftests",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel-src", required=True, metavar="SPEC", help="the tree the series applies to")
    p.add_argument("--series", required=True, metavar="SPEC", help="mbox, folder of .patch, or Message-Id")
    # --accel, --jobs, --mib, --no-bisect, --feature, --bisect-configs, --kernels, --no-boot,
    # --objects-only, --selftests, --selftest-source: declared in harness.options
    add_command_options(p, "verify")
    p.set_defaults(func=sc.cmd_verify)


def add_attribute_command(sub):
    p = sub.add_parser("attribute", help="which patch costs what: stock and every prefix of a series "
                       "(or a commit range, by binary search) built with the feature's option =y and =n, booted "
                       "and measured; a per-patch table with a verdict per step, and a step plot",
                       epilog="example:\n  harness attribute --kernel-src ~/linux-6.2.1 --series SERIES.mbox "
                              "--workload fork-latency --param sizes_mib=512",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p, required=False)
    p.add_argument("--range", metavar="A..B",
                   help="instead of --series: the commits A..B of the --kernel-src git tree, searched "
                        "by halving for the one where the plain fork moves")
    p.add_argument("--metric", metavar="NAME", help="the metric of the table (default: the workload's first)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted attribution (folder or id)")
    add_guest_args(p)
    add_workload_args(p)
    add_verdict_args(p)
    p.set_defaults(func=sc.cmd_attribute, default_workload="fork-latency")


def add_measure_commands(sub):
    """The subcommands reproduce and calibrate."""
    p = experiment_command(sub, "reproduce", "run an experiment's benchmarks end to end and write the "
                           "report (default: the default feature profile's experiment)",
                           "experiment file (default: the default feature profile's)")
    p.add_argument("--cell", action="append", metavar="ID",
                   help="only this cell (a group of workloads, on every kernel); repeatable")
    add_workload_args(p)
    add_verdict_args(p)
    p.set_defaults(func=sc.cmd_reproduce, label=None)

    p = sub.add_parser("calibrate", help="A/A calibration of the verdicts: one kernel booted under two "
                       "labels with the default design; the share of verdicts that call them different, "
                       "and after how many boots a known injected effect is detected",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p, required=False)
    add_guest_args(p)
    add_workload_args(p)
    add_command_options(p, "calibrate")       # --effect and the simulation's numbers
    p.add_argument("--layout", action="store_true",
                   help="A/A′: B is built as other layout variants than A (--variants each, default "
                        "4): false calls with one variant per label and with the design, layout spread")
    p.add_argument("--analyse", metavar="RUN", help="analyse a finished calibration run again")
    p.add_argument("--simulate", action="store_true",
                   help="no kernel: coverage of the 95%% intervals on simulated two-level data")
    p.set_defaults(func=sc.cmd_calibrate)


def add_results_commands(sub):
    """The subcommands cells, report, nightly and export."""
    p = experiment_command(sub, "cells", "the experiment's independent cells (a group of workloads on "
                           "every kernel, so one host measures every kernel it compares), for a CI matrix",
                           "experiment file (experiments/NAME.toml)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=sc.cmd_cells)

    p = sub.add_parser("report", help="statistics, plots and verdicts for runs: report.md and report.html")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run folder or a run id in results/; several runs are pooled (same accelerator)")
    p.add_argument("--out", metavar="DIR", help="where to write (default: the first run's folder)")
    p.add_argument("--claims", metavar="TOML", help="a file of [[claims]] to check (default: the experiment's)")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="write report.md and report.html without plots (matplotlib not loaded)")
    add_command_options(p, "report")          # --resamples, --noisy-cv
    add_verdict_args(p)
    p.set_defaults(func=sc.cmd_report, leave_at_once=True)     # see harness.cli.run

    p = experiment_command(sub, "nightly", "a night of CI: run the experiment (or take --run), record "
                           "it in the history, compare with stock and with previous nights; writes "
                           "junit.xml, kcidb.json and summary.md; exit 1 on a regression, 5 on a failed "
                           "kernel or task", "experiment file (experiments/NAME.toml)")
    p.add_argument("--label", action="append", help="name of each kernel in results (in order)")
    add_workload_args(p)
    p.add_argument("--run", metavar="RUN",
                   help="a finished run (folder or id), e.g. cells joined by `harness merge`, "
                        "instead of running the experiment")
    p.add_argument("--history", metavar="PATH", help="history database (default results/history.sqlite)")
    add_command_options(p, "nightly")         # --threshold, --nights
    add_verdict_args(p)
    p.set_defaults(func=sc.cmd_nightly)

    p = sub.add_parser("export", help="a finished run in another format: kcidb (KernelCI's results "
                       "format; pipe it into kcidb-submit) or lava (LAVA jobs)")
    add_export_args(p)
    p.set_defaults(func=sc.cmd_export)
    add_lava_command(sub)


def add_lava_command(sub):
    """`harness lava export` and `harness lava import`."""
    p = sub.add_parser("lava", help="a run's kernels and workloads as LAVA jobs (validated with "
                       "LAVA's schema), and LAVA's results back as a run that report reads")
    lava = p.add_subparsers(dest="lava_command", required=True)
    e = lava.add_parser("export", help="one LAVA job per kernel and workload of a run")
    e.add_argument("run", metavar="RUN", help="a run folder or a run id in results/ (its kernels "
                   "must be in this machine's cache)")
    e.add_argument("--out", "-o", metavar="DIR", required=True,
                   help="where the jobs (jobs/*.yaml) and the files they fetch are written")
    e.add_argument("--artifacts-url", metavar="URL",
                   help="where DIR is published for the dispatcher (default: file:// URLs of DIR)")
    i = lava.add_parser("import", help="LAVA's results of the exported jobs as a run folder")
    i.add_argument("export_dir", metavar="DIR", help="the folder harness lava export wrote")
    i.add_argument("results", metavar="RESULTS", nargs="+", help="LAVA results files: the "
                   "server's /results/JOB/yaml export (or a JSON list of its test cases)")
    p.set_defaults(func=sc.cmd_lava)


def add_fleet_commands(sub):
    """The subcommands history, remote, merge and selfbench."""
    p = sub.add_parser("history", help="a metric over the nights recorded by `harness nightly`")
    p.add_argument("metric", metavar="METRIC", help="e.g. fork_ns")
    p.add_argument("--workload", metavar="W")
    p.add_argument("--kernel", metavar="K")
    p.add_argument("--condition", metavar="C", help='a condition ("stock: fork") or a kind ("fork")')
    p.add_argument("--plot", metavar="PNG", help="also draw the metric over the nights")
    p.add_argument("--history", metavar="PATH", help="history database (default results/history.sqlite)")
    p.set_defaults(func=sc.cmd_history)

    p = sub.add_parser("remote", help="run an experiment's cells (each on every kernel) on SSH runners "
                       "(one cell per host at a time), stream their output, fetch and merge their runs",
                       epilog="example:\n  harness remote --experiment test-series-bench --host ci@kvm1 "
                              "--host ci@kvm2:2222 -- --kernel-src ~/linux-6.2.1",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_remote_args(p)
    p.set_defaults(func=sc.cmd_remote, parse=lambda argv: parser().parse_args(argv))

    p = sub.add_parser("merge", help="join partial runs (`harness run --cell`) of one experiment into one "
                       "run; every record keeps its host")
    p.add_argument("runs", nargs="+", metavar="RUN", help="a run folder or a run id in results/")
    p.add_argument("--out", metavar="DIR", help="the merged run's folder (default: a new run in results/)")
    p.set_defaults(func=sc.cmd_merge)

    p = sub.add_parser("selfbench", help="time the harness itself: builds, image, boot")
    p.add_argument("--kernel-src", default="debian:linux-source-6.1", metavar="SPEC")
    add_command_options(p, "selfbench")       # --accel, --boots
    p.add_argument("--cold", action="store_true",
                   help="also time a cold build in a fresh build folder with ccache off (minutes)")
    p.add_argument("--speed", action="store_true",
                   help="only where users wait: --help, run --help and report on a 3x6 run (seconds)")
    p.add_argument("--builds", action="store_true",
                   help="with --speed: a kernel from cold, then --series on it, in a scratch workbench")
    p.add_argument("--series", metavar="SPEC", help="with --builds (default: the test series)")
    p.add_argument("--feature", metavar="PROFILE",
                   help="with --builds: build the series once per config of this feature profile "
                        "(its option on and off; default: none, one build)")
    p.add_argument("--times", type=int, default=10, help="with --speed: runs of each command (default 10)")
    p.set_defaults(func=sc.cmd_selfbench)



def add_remote_args(p):
    """The `harness remote` flags."""
    from harness.ci.remote import DEFAULT_COMMAND
    p.add_argument("--experiment", required=True, metavar="NAME|PATH",
                   help="experiment name (in the runners' checkout) or a local file (copied to them)")
    p.add_argument("--host", action="append", default=[], metavar="USER@HOST[:PORT]",
                   help="an SSH runner with the harness installed; repeatable")
    p.add_argument("--hosts-file", metavar="FILE", help="runners, one per line (# comments)")
    p.add_argument("--cell", action="append", metavar="ID", help="run only these cells (default: all)")
    p.add_argument("--remote-workdir", default="~/kernel-harness", metavar="DIR",
                   help="the harness checkout (with .venv) on the runners (default ~/kernel-harness)")
    p.add_argument("--remote-command", default=DEFAULT_COMMAND, metavar="CMD",
                   help="how to start the harness on a runner; {workdir} is the quoted workdir "
                        f"(default: '{DEFAULT_COMMAND}')")
    p.add_argument("--known-hosts", metavar="FILE", help="host keys to trust besides ~/.ssh/known_hosts")
    p.add_argument("--identity", metavar="KEY", help="private key (default: your usual keys and agent)")
    p.add_argument("--forward-agent", action="store_true",
                   help="forward your SSH agent to the runners (off by default, whatever ~/.ssh/config says)")
    add_command_options(p, "remote")          # --cell-timeout
    p.add_argument("--results", metavar="DIR", help="where to write (default results/ or $HARNESS_RESULTS)")
    p.add_argument("run_args", nargs="*", metavar="-- RUN-FLAGS",
                   help="more `harness run` flags for every cell, after --, e.g. -- --accel kvm")


def add_export_args(p):
    """`harness export`'s flags."""
    import os
    from harness.ci.kcidb import ORIGIN
    p.add_argument("run", metavar="RUN", help="a run folder or a run id in results/")
    p.add_argument("--format", choices=["kcidb", "lava"], default="kcidb",
                   help="kcidb (default) or lava: the run's LAVA jobs into --out DIR (harness lava export)")
    p.add_argument("--origin", default=os.environ.get("HARNESS_KCIDB_ORIGIN", ORIGIN),
                   help="the CI system's KCIDB origin (the name KernelCI gave the submitter; "
                        f"default $HARNESS_KCIDB_ORIGIN or {ORIGIN})")
    p.add_argument("--artifacts-url", metavar="URL", default=os.environ.get("HARNESS_ARTIFACTS_URL"),
                   help="where the run's folder is published (logs are linked under it; default "
                        "$HARNESS_ARTIFACTS_URL, else file:// URLs)")
    p.add_argument("--out", "-o", metavar="FILE", help="write to FILE instead of standard output")
