"""The `harness` command: parses arguments and calls the pipeline's objects, nothing more.

Exit codes: 0 ok; 2 bad request (UserError); 3 this machine cannot do it (InfraError); 4 a kernel
or workload failed to compile (BuildError); 5 the guest failed: panic, timeout, workload error
(GuestError); 130 interrupted. `harness nightly` also exits 1 on a regression, `harness verify`
1 when a section of its verdict failed.
"""
import argparse
import signal
import threading
from dataclasses import replace

from harness import errors, ui

EPILOG = """kernel source specs (--kernel-src):
  PATH                          a local kernel tree (git checkout or plain folder; built out of tree)
  debian:linux-source-6.1       Debian's kernel source package (installed with apt when missing)
  https://.../linux-6.2.tar.xz  a release tarball; append #sha256=HEX to pin it
  git+URL#REF                   a git repository at a tag, branch or commit

examples:
  harness run --kernel-src debian:linux-source-6.1
  harness run --experiment cow-pte-v4 --kernel-src ~/linux-6.2.1 --series cow-pte-v4.mbox
  harness run --kernel-src ~/linux --workload fork-memory --param mib=512 --param repeat=5
  harness boot --kernel-src debian:linux-source-6.1 -- cat /proc/meminfo
  harness build --kernel-src ~/linux --config cow-pte
"""


def add_kernel_args(p, multiple=False, required=True):
    p.add_argument("--kernel-src", required=required and not multiple, action="append" if multiple else "store",
                   metavar="SPEC", help="kernel source (see the specs below)" +
                   ("; repeat for several kernels (overrides the experiment's)" if multiple else ""))
    p.add_argument("--series", metavar="SPEC",
                   help="patch series to apply: an mbox, a folder of .patch files, or a lore "
                        "Message-Id (fetched with b4)")
    p.add_argument("--config", action="append", default=[], metavar="FRAGMENT",
                   help="config fragment (a name in kernel-config/ or a path), merged after "
                        "guest-base; repeatable")
    p.add_argument("--jobs", "-j", type=int, help="parallel build jobs (default: all cores)")


def add_guest_args(p):
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default=None,
                   help="auto probes KVM with a real boot and falls back to TCG (default: auto)")
    p.add_argument("--timing", choices=["real", "icount", "auto"], default=None,
                   help="real: wall-clock time in the guest (KVM, or multi-threaded TCG); icount: TCG "
                        "counting instructions, deterministic (1 ns per instruction, one vCPU); auto: "
                        "icount when KVM is not available (default: real; nightly: auto)")
    p.add_argument("--memory", type=int, default=None, metavar="MIB", help="guest memory (default 3072)")
    p.add_argument("--cpus", type=int, default=None, help="guest vCPUs (default 2)")
    p.add_argument("--image", default=None, help="guest image recipe in vm-images/ (default debian-minimal)")
    p.add_argument("--mirror", help="Debian mirror for the image (default: this host's apt sources)")
    p.add_argument("--boot-timeout", type=int, default=None, metavar="S",
                   help="seconds for the guest to become ready (default 120)")
    p.add_argument("--pin", default=None, metavar="CPUS",
                   help="run QEMU on these host CPUs only (taskset list, e.g. 2-5): keeps other "
                        "work off the measuring cores on a big runner")
    p.add_argument("--cmdline", default=None, metavar="TEXT",
                   help="extra guest kernel command line, e.g. 'transparent_hugepage=always'")
    p.add_argument("--no-prealloc", dest="prealloc", action="store_false", default=None,
                   help="let the host fault the guest's RAM in while it runs (the default faults it "
                        "in before boot: a host fault during a timed fork adds noise)")
    p.add_argument("--boots", type=int, default=None, metavar="N",
                   help="boots per kernel, the unit of replication (default 1 for run, "
                        "5 for reproduce, nightly and calibrate)")
    p.add_argument("--order", choices=["alternating", "interleaved", "random", "sequential"],
                   default=None, help="order of the kernels' boots: alternating (A B, B A, ...; "
                                      "default), interleaved (A B, A B), random blocks, sequential")
    p.add_argument("--seed", type=int, default=None, help="seed of the random order (recorded)")
    p.add_argument("--until-ci", type=float, default=None, metavar="FRACTION", dest="until",
                   help="boot on (after --boots) until every comparison's 95%% interval is within "
                        "±FRACTION of its ratio, e.g. 0.01")
    p.add_argument("--max-boots", type=int, default=None, metavar="N",
                   help="the most boots per kernel with --until-ci (default 20)")


def parse_params(items):
    """NAME=VALUE pairs; a NAME given twice becomes a list (the workload then runs once per value)."""
    params = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise errors.UserError(f"--param takes NAME=VALUE, got '{item}'")
        if key in params:
            params[key] = (params[key] if isinstance(params[key], list) else [params[key]]) + [value]
        else:
            params[key] = value
    return params


class WorkloadFlag(argparse.Action):
    """--workload NAME starts a workload; the --param flags after it are its parameters."""

    def __call__(self, parser, ns, value, option_string=None):
        ns.workload_items = (getattr(ns, "workload_items", None) or []) + [(value, [])]


class ParamFlag(argparse.Action):
    def __call__(self, parser, ns, value, option_string=None):
        items = getattr(ns, "workload_items", None) or [("fork-memory", [])]
        items[-1][1].append(value)
        ns.workload_items = items


def add_verdict_args(p):
    p.add_argument("--practical", type=float, default=None, metavar="FRACTION",
                   help="smallest change called faster/slower (default 0.02, or the workload "
                        "manifest's [practical] entry for a metric)")
    p.add_argument("--multiplicity", choices=["bh", "holm", "none"], default="bh",
                   help="error control over the report's comparisons: bh (Benjamini-Hochberg, false "
                        "discovery rate; default), holm (family-wise error) or none")


def add_workload_args(p):
    p.add_argument("--workload", action=WorkloadFlag, metavar="NAME",
                   help="a workload in workloads/ (default fork-memory); repeatable")
    p.add_argument("--param", action=ParamFlag, metavar="NAME=VALUE",
                   help="a parameter of the workload named before it, e.g. mib=512; a name given "
                        "twice runs the workload once per value (--param cow_pte=0 --param cow_pte=1)")


def workload_specs(args):
    """--workload/--param as workload specs, or None when none were given."""
    from harness import experiment as ex
    items = getattr(args, "workload_items", None)
    if not items:
        return None
    return [ex.WorkloadSpec(name, combo) for name, params in items
            for combo in ex.expand(parse_params(params))]


def experiment(args):
    """The experiment the flags describe: a TOML file with overrides, or one made from flags."""
    from harness import experiment as ex
    guest = {"accel": args.accel, "timing": getattr(args, "timing", None), "memory_mib": args.memory, "cpus": args.cpus, "image": args.image,
             "mirror": args.mirror, "jobs": args.jobs, "boot_timeout": args.boot_timeout,
             "extra_cmdline": args.cmdline, "pin": getattr(args, "pin", None),
             "boots": getattr(args, "boots", None), "order": getattr(args, "order", None),
             "seed": getattr(args, "seed", None), "until": getattr(args, "until", None),
             "prealloc": getattr(args, "prealloc", None),
             "max_boots": getattr(args, "max_boots", None)}
    srcs = args.kernel_src if isinstance(args.kernel_src, list) else [args.kernel_src] if args.kernel_src else []
    if getattr(args, "experiment", None):
        if len(srcs) > 1:
            raise errors.UserError("with --experiment, give at most one --kernel-src")
        exp = ex.load(args.experiment, kernel_src=srcs[0] if srcs else None, series=args.series, **guest)
        workloads = workload_specs(args)
        return replace(exp, workloads=workloads) if workloads else exp
    if not srcs:
        raise errors.UserError("name a kernel with --kernel-src SPEC (or an --experiment)")
    labels = getattr(args, "label", None) or []
    if len(labels) > len(srcs):
        raise errors.UserError("more --label than --kernel-src")
    kernels = []
    for i, src in enumerate(srcs):
        label = labels[i] if i < len(labels) else f"kernel{i + 1}" if len(srcs) > 1 else "kernel"
        kernels.append(ex.KernelSpec(label, src, ex.DEFAULT_FRAGMENTS + args.config, args.series))
    workloads = workload_specs(args) or [ex.WorkloadSpec("fork-memory")]
    return ex.Experiment(kernels=kernels, workloads=workloads,
                         **{k: v for k, v in guest.items() if v is not None})


def several_boots(exp):
    """reproduce, nightly and calibrate measure several boots per kernel unless told otherwise."""
    from harness import experiment as ex
    return replace(exp, boots=ex.DESIGN_BOOTS) if exp.boots is None else exp


def cmd_build(args):
    from harness import commands
    args.accel = args.memory = args.cpus = args.image = args.mirror = args.boot_timeout = None
    args.timing = args.pin = None
    args.cmdline = args.boots = args.order = args.seed = args.until = args.max_boots = None
    args.prealloc = None
    return commands.build(experiment(args))


def cmd_boot(args):
    from harness import commands
    return commands.boot(experiment(args), args.command)


def cmd_run(args):
    from harness.pipeline import Run
    if args.resume:
        if args.experiment or args.kernel_src or args.series or args.cell:
            raise errors.UserError("--resume continues a run as it was started; name nothing else with it")
        run = Run.resume(args.resume).execute()
    else:
        exp = experiment(args)
        if args.cell:
            exp = exp.only(args.cell)
        run = Run(exp).execute()
    ui.console.print(f"results: {run.store.dir}")
    return run.exit_code


def cmd_verify(args):
    from harness.verify import Verify
    configs = [c.strip() for c in args.bisect_configs.split(",") if c.strip()]
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    v = Verify(args.kernel_src, args.series, accel=args.accel or "auto", jobs=args.jobs,
               bisect=not args.no_bisect, configs=configs, kernels=kernels, boot=not args.no_boot,
               selftest_source=args.selftest_source, mib=args.mib).execute()
    return v.exit_code


def cmd_reproduce(args):
    from harness.analysis import report
    from harness.pipeline import Run
    args.experiment = args.experiment or "cow-pte-v4"
    exp = several_boots(experiment(args))
    if args.cell:
        exp = exp.only(args.cell)
    run = Run(exp).execute()
    with ui.step("statistics, plots and report"):
        md, page = report.write([run.store.dir], claims=exp.claims, practical=args.practical,
                                method=args.multiplicity)
    ui.out(report.cv_summary(run.store.dir))
    ui.console.print(f"report: {md}\n        {page}")
    return run.exit_code


def cmd_calibrate(args):
    from harness.analysis import calibrate

    def run_experiment():
        from harness.pipeline import Run
        args.kernel_src, args.label, args.series, args.experiment = [args.kernel_src] * 2, ["A", "B"], None, None
        exp = several_boots(experiment(args))
        if not getattr(args, "workload_items", None):
            exp = replace(exp, workloads=list(calibrate.WORKLOADS))
        run = Run(replace(exp, name="calibrate")).execute()
        return run.store.dir, run.exit_code

    if not (args.simulate or args.analyse or args.kernel_src):
        raise errors.UserError("name a kernel with --kernel-src SPEC (or --simulate, or --analyse RUN)")
    return calibrate.main(args, run_experiment)


def cmd_cells(args):
    import json
    from harness.ci import cells as cells_mod
    exp = experiment(args)
    cells = []
    for cell in cells_mod.of(exp):      # a group of workloads on every kernel: one host compares them
        part = exp.only([cell.id])
        cells.append({"id": cell.id, "kernels": [k.label for k in exp.kernels],
                      "workloads": [{"name": w.name, "params": w.params} for w in part.workloads],
                      "selftests": part.selftests, "command": part.command_line()})
    if args.format == "json":
        ui.out(json.dumps(cells, indent=2))
    else:
        for c in cells:
            ui.out(f"{c['id']}\t{c['command']}")
    return 0


def cmd_report(args):
    import tomllib
    from pathlib import Path
    from harness.analysis import report
    claims = None
    if args.claims:
        try:
            claims = tomllib.loads(Path(args.claims).read_text()).get("claims", [])
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise errors.UserError(f"cannot read claims from {args.claims}: {exc}") from None
    md, page = report.write(args.runs, out_dir=args.out, claims=claims, resamples=args.resamples,
                            practical=args.practical, method=args.multiplicity,
                            noisy_cv=args.noisy_cv)
    ui.out(report.cv_summary(args.runs))
    ui.console.print(f"report: {md}\n        {page}")
    return 0


def cmd_image(args):
    from harness import commands
    return commands.image(args.image, args.mirror)


def cmd_setup(args):
    from harness import host
    return host.main(args)


def cmd_selfbench(args):
    from harness import selfbench
    return selfbench.main(args)


def cmd_nightly(args):
    from harness.ci.nightly import Nightly
    if args.run and (args.experiment or args.kernel_src):
        raise errors.UserError("--run takes a finished run; name no experiment or kernel with it")
    if not args.run and args.timing is None:
        args.timing = "auto"          # nightly runs on TCG-only runners are deterministic by default
    exp = None if args.run else several_boots(experiment(args))
    night = Nightly(exp, run=args.run, baseline_nights=args.nights, threshold=args.threshold,
                    method=args.multiplicity, practical=args.practical,
                    history=args.history).execute()
    ui.console.print(f"nightly: {night.run_dir / 'summary.md'}, {night.run_dir / 'junit.xml'}")
    return night.exit_code


def cmd_history(args):
    from harness.ci import history
    return history.main(args)


def cmd_remote(args):
    from harness.ci import remote
    return remote.main(args)


def cmd_merge(args):
    from harness.ci.merge import merge
    store = merge(args.runs, out=args.out)
    ui.console.print(f"merged {len(args.runs)} runs: {store.dir}")
    return 0


def parser():
    ap = argparse.ArgumentParser(
        prog="harness", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Build Linux kernels (and patch series), boot them under QEMU, run workloads "
                    "in the guest and compare what they do to memory and latency.")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("setup", help="install the Debian packages the harness needs (as root)")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("build", help="build a kernel, with a patch series if given (cached)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("image", help="build the guest image (cached)")
    p.add_argument("--image", default="debian-minimal")
    p.add_argument("--mirror")
    p.set_defaults(func=cmd_image)

    p = sub.add_parser("boot", help="boot a kernel: a shell in the guest, or one command after --",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p)
    add_guest_args(p)
    p.add_argument("command", nargs="*", help="command to run in the guest (after --)")
    p.set_defaults(func=cmd_boot)

    p = sub.add_parser("run", help="build, boot and run workloads; prints tables, stores results",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p, multiple=True)
    add_guest_args(p)
    p.add_argument("--experiment", metavar="NAME|PATH",
                   help="an experiment file (experiments/NAME.toml): kernels, series, workloads; "
                        "--kernel-src and --series override its source and series")
    p.add_argument("--label", action="append", help="name of each kernel in results (in order)")
    p.add_argument("--cell", action="append", metavar="ID",
                   help="run only this cell of the experiment: a group of workloads, on every "
                        "kernel (see `harness cells`); repeatable")
    p.add_argument("--resume", metavar="RUN",
                   help="continue an interrupted run (folder or id): finished kernels are kept")
    add_workload_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("verify", help="a reviewer's checks of a series: apply, checkpatch, every "
                       "patch built, kernels booted with workloads, dmesg and selftests",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel-src", required=True, metavar="SPEC", help="the tree the series applies to")
    p.add_argument("--series", required=True, metavar="SPEC", help="mbox, folder of .patch, or Message-Id")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default=None)
    p.add_argument("--jobs", "-j", type=int)
    p.add_argument("--no-bisect", action="store_true", help="skip building every patch")
    p.add_argument("--bisect-configs", default="COW_PTE=y,COW_PTE=n", metavar="LIST",
                   help="configs to build every patch with: COW_PTE=y, COW_PTE=n, base "
                        "(default: COW_PTE=y,COW_PTE=n)")
    p.add_argument("--kernels", default="stock,cow-pte,debug", metavar="LIST",
                   help="kernels to boot and measure: stock, cow-pte, debug, patched, patched-debug "
                        "(default: stock,cow-pte,debug)")
    p.add_argument("--no-boot", action="store_true", help="skip booting the kernels")
    p.add_argument("--selftest-source", metavar="PATH",
                   help="a 6.2+ tree to take the cow selftest from when the kernel's tree has none")
    p.add_argument("--mib", type=int, default=1024, help="memory mapped by fork-memory (default 1024)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("reproduce", help="run an experiment's benchmarks end to end and write the report "
                       "(default: cow-pte-v4, the series' own evaluation)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p, multiple=True)
    add_guest_args(p)
    p.add_argument("--experiment", metavar="NAME|PATH", help="experiment file (default cow-pte-v4)")
    p.add_argument("--cell", action="append", metavar="ID",
                   help="only this cell (a group of workloads, on every kernel); repeatable")
    add_workload_args(p)
    add_verdict_args(p)
    p.set_defaults(func=cmd_reproduce, label=None)

    p = sub.add_parser("calibrate", help="A/A calibration of the verdicts: one kernel booted under two "
                       "labels with the default design; the share of verdicts that call them different, "
                       "and after how many boots a known injected effect is detected",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p, required=False)
    add_guest_args(p)
    add_workload_args(p)
    p.add_argument("--effect", type=float, default=0.05,
                   help="the slowdown injected into B's times for the power check (default 0.05)")
    p.add_argument("--analyse", metavar="RUN", help="analyse a finished calibration run again")
    p.add_argument("--simulate", action="store_true",
                   help="no kernel: coverage of the 95%% intervals on simulated two-level data")
    p.add_argument("--sims", type=int, default=1000, help="simulations (default 1000)")
    p.add_argument("--reps", type=int, default=20, help="simulated repetitions per boot (default 20)")
    p.add_argument("--boot-sd", type=float, default=0.02, help="simulated between-boot sd, log scale")
    p.add_argument("--rep-sd", type=float, default=0.02, help="simulated within-boot sd, log scale")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("cells", help="the experiment's independent cells (a group of workloads on every "
                       "kernel, so one host measures every kernel it compares), for a CI matrix",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p, multiple=True)
    add_guest_args(p)
    p.add_argument("--experiment", metavar="NAME|PATH", help="experiment file (experiments/NAME.toml)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_cells)

    p = sub.add_parser("report", help="statistics, plots and verdicts for runs: report.md and report.html")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run folder or a run id in results/; several runs are pooled (same accelerator)")
    p.add_argument("--out", metavar="DIR", help="where to write (default: the first run's folder)")
    p.add_argument("--claims", metavar="TOML", help="a file of [[claims]] to check (default: the experiment's)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--noisy-cv", type=float, default=0.05, metavar="CV",
                   help="call a cell noisy above this coefficient of variation (default 0.05)")
    add_verdict_args(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("nightly", help="a night of CI: run the experiment (or take --run), record it "
                       "in the history, compare with stock and with previous nights; writes "
                       "junit.xml and summary.md; exit 1 on a regression, 5 on a failed kernel or cell",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_args(p, multiple=True)
    add_guest_args(p)
    p.add_argument("--experiment", metavar="NAME|PATH", help="experiment file (experiments/NAME.toml)")
    p.add_argument("--label", action="append", help="name of each kernel in results (in order)")
    add_workload_args(p)
    p.add_argument("--run", metavar="RUN",
                   help="a finished run (folder or id), e.g. cells joined by `harness merge`, "
                        "instead of running the experiment")
    p.add_argument("--history", metavar="PATH", help="history database (default results/history.sqlite)")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="a regression is worse than the previous nights' median by more than this "
                        "fraction (default 0.05)")
    p.add_argument("--nights", type=int, default=5, help="previous nights to compare with (default 5)")
    add_verdict_args(p)
    p.set_defaults(func=cmd_nightly)

    p = sub.add_parser("history", help="a metric over the nights recorded by `harness nightly`")
    p.add_argument("metric", metavar="METRIC", help="e.g. fork_ns")
    p.add_argument("--workload", metavar="W")
    p.add_argument("--kernel", metavar="K")
    p.add_argument("--condition", metavar="C", help='a condition ("stock: fork") or a kind ("fork")')
    p.add_argument("--plot", metavar="PNG", help="also draw the metric over the nights")
    p.add_argument("--history", metavar="PATH", help="history database (default results/history.sqlite)")
    p.set_defaults(func=cmd_history)

    from harness.ci import remote
    p = sub.add_parser("remote", help="run an experiment's cells (each on every kernel) on SSH runners "
                       "(one cell per host at a time), stream their output, fetch and merge their runs",
                       epilog="example:\n  harness remote --experiment cow-pte-v4 --host ci@kvm1 "
                              "--host ci@kvm2:2222 -- --kernel-src ~/linux-6.2.1",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    remote.add_arguments(p)
    p.set_defaults(func=cmd_remote)

    p = sub.add_parser("merge", help="join partial runs (`harness run --cell`) of one experiment into one "
                       "run; every record keeps its host")
    p.add_argument("runs", nargs="+", metavar="RUN", help="a run folder or a run id in results/")
    p.add_argument("--out", metavar="DIR", help="the merged run's folder (default: a new run in results/)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("selfbench", help="time the harness itself: builds, image, boot")
    p.add_argument("--kernel-src", default="debian:linux-source-6.1", metavar="SPEC")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    p.add_argument("--boots", type=int, default=5, help="boots to time (default 5)")
    p.add_argument("--cold", action="store_true",
                   help="also time a cold build in a fresh build folder with ccache off (minutes)")
    p.set_defaults(func=cmd_selfbench)
    return ap


def _terminated(signum, frame):
    raise KeyboardInterrupt     # SIGTERM (a CI job's or a remote cell's timeout): stop like Ctrl-C


def main(argv=None):
    args = parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return args.func(args) or 0
    except errors.HarnessError as exc:
        ui.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        ui.error("interrupted")
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
