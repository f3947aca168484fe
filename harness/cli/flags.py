"""The flags that describe an experiment, and the experiment they describe."""
import argparse
from dataclasses import replace

from harness import errors, options


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
    add_options(p, ["build"])


def add_guest_args(p):
    add_options(p, ["guest", "design", None])


def add_options(p, sections, leave_out=()):
    """The flags of the options (harness.options) in these experiment-file sections, but those
    named in leave_out. Every default here is None: a flag not given leaves the experiment's value
    (its file's, or the option's default) alone."""
    for o in options.OPTIONS:
        if o.section not in sections or o.name in leave_out:
            continue
        flags = [o.flag] + ([o.short] if o.short else [])
        kwargs = {"dest": o.name, "default": None, "help": o.help.replace("%", "%%")}
        if o.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=o.type, choices=o.choices, metavar=o.metavar)
        p.add_argument(*flags, **kwargs)


def add_command_options(p, command):
    """The flags harness.options declares for this subcommand (its checks run in harness.cli);
    --practical comes with add_verdict_args."""
    for o in options.command_options(command):
        if o.commands != options.VERDICTS:
            add_option(p, o)


def add_option(p, o):
    """One declared flag of a subcommand; a bool is a switch (--no-bisect), off unless given."""
    flags = [o.flag] + ([o.short] if o.short else [])
    if o.type is bool:
        p.add_argument(*flags, dest=o.name, action="store_true", help=o.help.replace("%", "%%"))
        return
    p.add_argument(*flags, dest=o.name, default=o.default, type=o.type, choices=o.choices,
                   metavar=o.metavar, help=o.help.replace("%", "%%"))


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
        items = getattr(ns, "workload_items", None) or [(getattr(ns, "default_workload", "fork-memory"), [])]
        items[-1][1].append(value)
        ns.workload_items = items


def add_verdict_args(p):
    add_option(p, next(o for o in options.COMMAND_OPTIONS if o.name == "practical"))
    p.add_argument("--multiplicity", choices=["bh", "holm", "none"], default="bh",
                   help="error control over the report's comparisons: bh (Benjamini-Hochberg, false "
                        "discovery rate; default), holm (family-wise error) or none")


def add_workload_args(p):
    p.add_argument("--workload", action=WorkloadFlag, metavar="NAME",
                   help="a workload in workloads/ (default fork-memory); repeatable")
    p.add_argument("--param", action=ParamFlag, metavar="NAME=VALUE",
                   help="a parameter of the workload named before it, e.g. mib=512; a name given "
                        "twice runs the workload once per value (--param feature=0 --param feature=1)")


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
    guest = {o.name: getattr(args, o.name, None) for o in options.OPTIONS}
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
    """The default design of reproduce, nightly and calibrate: DESIGN_VARIANTS layout variants per
    kernel (not with icount, which counts instructions: placement does not change them),
    DESIGN_BOOTS per kernel (at least two per variant), then on until the headline intervals are
    within ±DESIGN_UNTIL (at most MAX_BOOTS); a --boots of their own (flag or experiment file)
    fixes the count unless --until-ci goes with it."""
    from harness import experiment as ex
    if exp.variants is None and exp.timing != "icount":
        exp = layout_design(exp)
    if exp.boots is not None:
        return exp
    return replace(exp, boots=max(ex.DESIGN_BOOTS, 2 * (exp.variants or 1)),
                   until=ex.DESIGN_UNTIL if exp.until is None else exp.until)


def layout_design(exp):
    """The design's layout variants per kernel (DESIGN_VARIANTS unless --variants says)."""
    from harness import experiment as ex
    return replace(exp, variants=exp.variants or ex.DESIGN_VARIANTS)


