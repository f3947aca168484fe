"""One function per `harness` subcommand: takes the parsed flags, calls the pipeline's objects."""
import re
import tempfile
from pathlib import Path
from dataclasses import replace

from harness import errors, ui, validate
from harness.cli.flags import experiment, layout_design, several_boots


def cmd_build(args):
    from harness import commands
    return commands.build(experiment(args))


def cmd_boot(args):
    from harness import commands
    return commands.boot(experiment(args), args.command, args.put)


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
    configs = [c.strip() for c in (args.bisect_configs or "").split(",") if c.strip()] or None
    kernels = [k.strip() for k in (args.kernels or "").split(",") if k.strip()] or None
    v = Verify(args.kernel_src, args.series, accel=args.accel or "auto", jobs=args.jobs,
               bisect=not args.no_bisect, configs=configs, kernels=kernels, boot=not args.no_boot,
               selftest_source=args.selftest_source, mib=args.mib,
               objects_only=args.objects_only, selftests=args.selftests, feature=args.feature).execute()
    return v.exit_code


def cmd_attribute(args):
    import shlex
    import sys
    from harness.attribute import Attribution
    if args.resume:
        if args.kernel_src or args.series or args.range:
            raise errors.UserError("--resume continues an attribution as it was started; name nothing else with it")
        return Attribution.resume(args.resume).execute().exit_code
    if not args.kernel_src:
        raise errors.UserError("name the tree with --kernel-src (or --resume RUN)")
    args.timing = args.timing or "auto"
    from harness import feature
    profile = feature.load(args.feature) if getattr(args, "feature", None) else feature.default()
    default = profile.workloads.get("attribute", "fork-latency")      # the profile's, else this
    args.workload_items = getattr(args, "workload_items", None) or [(default, [])]
    exp = experiment(args)
    command = shlex.join(["harness", *sys.argv[1:]]) if sys.argv[1:2] == ["attribute"] else None
    return Attribution(exp, args.kernel_src, args.series, args.range, args.metric, args.practical,
                       args.multiplicity, command=command, extra=args.config).execute().exit_code


def cmd_reproduce(args):
    from harness.analysis import report
    from harness.pipeline import Run
    from harness import feature
    args.experiment = args.experiment or feature.default().experiment
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
        if args.layout:                  # A/A′: B's variants are other pads than A's
            exp = layout_design(exp)
            exp = replace(exp, kernels=[exp.kernels[0], replace(exp.kernels[1], layout=exp.variants)])
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
    from pathlib import Path
    from harness.analysis import drawer
    from harness.results import RunStore
    from harness import experiment as ex, options
    claims = None
    if args.claims:
        path = Path(args.claims)
        if not path.is_file():
            raise errors.UserError(f"--claims {args.claims}: not a file; give a TOML file of [[claims]]")
        data = ex.read_toml(path)
        for key in data:
            if key != "claims":
                options.unknown_key(f"--claims {args.claims}", key, ["claims"])
        options.check_table(f"--claims {args.claims}", data, [options.Key("claims", "tables", "the claims")])
        claims = data.get("claims", [])
        for i, c in enumerate(claims, 1):
            options.check_table(f"{path}: [[claims]] entry {i}", c, options.FILE_KEYS["claims"])
    for run in args.runs:           # every run readable before anything is computed or written
        RunStore.open(run)
    # the plots are drawn beside the statistics (another process started before either loads
    # pandas), the text printed first
    out = Path(args.out or RunStore.open(args.runs[0]).dir)
    plots = drawer.Plots(args.runs, out) if args.plots else False
    from harness.analysis import report
    ui.out(report.cv_summary(args.runs))
    for run in args.runs:                  # an attribution run: its per-patch tables again
        if "attribution" in RunStore.open(run).metadata:
            from harness import attribute
            ui.out(attribute.show(run, practical=args.practical, method=args.multiplicity))
    md, page = report.write(args.runs, out_dir=args.out, claims=claims, resamples=args.resamples,
                            practical=args.practical, method=args.multiplicity,
                            noisy_cv=args.noisy_cv, plots=plots)
    ui.console.print(f"report: {md}\n        {page}")
    return 0


def cmd_image(args):
    from harness import commands
    return commands.image(args.image, args.mirror)


def cmd_standin(args):
    from harness import commands
    folder = Path(args.logs or tempfile.mkdtemp(prefix="harness-standin-logs-"))
    return commands.standin(folder, args.memory, args.accel)


def cmd_setup(args):
    from harness import host
    return host.main(args)


def cmd_selfbench(args):
    validate.source(args.kernel_src, "--kernel-src")
    validate.results_folder()
    if args.speed:
        from harness import speedbench
        return speedbench.main(args)
    from harness import selfbench
    return selfbench.main(args)


def cmd_nightly(args):
    from harness.ci.nightly import Nightly
    if args.run and (args.experiment or args.kernel_src):
        raise errors.UserError("--run takes a finished run; name no experiment or kernel with it")
    if args.run:
        from harness.results import RunStore
        from harness.analysis import stats
        stats.load_run(RunStore.open(args.run).dir)     # the stored run readable, before anything is written
    if not args.run and args.timing is None:
        args.timing = "auto"          # nightly runs on TCG-only runners are deterministic by default
    exp = None if args.run else several_boots(experiment(args))
    night = Nightly(exp, run=args.run, baseline_nights=args.nights, threshold=args.threshold,
                    method=args.multiplicity, practical=args.practical,
                    history=args.history).execute()
    ui.console.print(f"nightly: {night.run_dir / 'summary.md'}, {night.run_dir / 'junit.xml'}, "
                     f"{night.run_dir / 'kcidb.json'}")
    return night.exit_code


def cmd_export(args):
    from pathlib import Path
    from harness import safety
    if args.artifacts_url is not None:
        if not re.match(r"^(https?|file)://\S+$", args.artifacts_url):
            raise errors.UserError(f"--artifacts-url {safety.redact(args.artifacts_url)!r}: allowed: an "
                                   f"http(s):// or file:// URL")
        args.artifacts_url = safety.redact(args.artifacts_url)    # links are published: no secrets
    if args.out and not Path(args.out).parent.is_dir():
        raise errors.UserError(f"--out {args.out}: its folder does not exist")
    if args.format == "lava":
        from harness.ci import lava
        if not args.out:
            raise errors.UserError("--format lava writes a folder of jobs: give it with --out DIR")
        args.lava_command = "export"
        return lava.main(args)
    from harness.ci import kcidb
    return kcidb.main(args)


def cmd_lava(args):
    from harness.ci import lava
    return lava.main(args)


def cmd_history(args):
    from pathlib import Path
    from harness import paths
    if not args.metric.strip() or not re.fullmatch(r"[\w.-]+", args.metric):
        raise errors.UserError(f"metric {args.metric!r}: allowed: a metric name such as fork_ns")
    path = Path(args.history) if args.history else paths.results() / "history.sqlite"
    if not path.is_file():
        raise errors.UserError(f"--history {path}: no history database there (harness nightly writes one)")
    if args.plot and (not args.plot.endswith(".png") or not Path(args.plot).resolve().parent.is_dir()):
        raise errors.UserError(f"--plot {args.plot}: allowed: a .png file in a folder that exists")
    from harness.ci import history
    return history.main(args)


def cmd_remote(args):
    """The run flags after -- are parsed here, so a bad one fails before any host is asked."""
    from harness.ci import remote
    hosts = remote.read_hosts(args.host, args.hosts_file)
    if "--cell" in args.run_args or "--resume" in args.run_args:
        raise errors.UserError("name the cells with --cell before --, not in the run flags")
    try:
        run_args = args.parse(["run", "--experiment", args.experiment, *args.run_args])
    except SystemExit:
        raise errors.UserError(f"bad harness run arguments: {' '.join(args.run_args)}") from None
    exp = experiment(run_args)
    for spec in exp.workloads:      # what does not depend on the runner, checked before connecting
        validate.workload(spec.name, spec.params)
    from harness.experiment import design
    design(exp)
    r = remote.run_on_hosts(args.experiment, hosts, args.run_args, args.remote_workdir, args.results,
                            cells=args.cell, command=args.remote_command, known_hosts=args.known_hosts,
                            identity=args.identity, cell_timeout=args.cell_timeout,
                            exp=exp, forward_agent=args.forward_agent)
    if r.failed:
        ui.error(f"cells failed: {', '.join(r.failed)} ("
                 + ("attempts in the merged metadata.json, under remote)" if r.store else "no run came back)"))
    if r.store:
        ui.console.print(f"results: {r.store.dir}")
    return r.exit_code


def cmd_merge(args):
    from harness.ci.merge import merge
    store = merge(args.runs, out=args.out)
    ui.console.print(f"merged {len(args.runs)} runs: {store.dir}")
    return 0
