"""One declaration of every option (harness.options): the flags, the experiment file's keys, the
Experiment's fields and the reproducer command all come from it, so each option must survive the
trip through each of them."""
import shlex
from dataclasses import fields

import pytest

from harness import cli, options
from harness.errors import UserError
from harness.experiment import Experiment, KernelSpec, load


def other_value(option):
    """A valid value that is not the option's default."""
    if option.choices:
        return next(c for c in reversed(option.choices) if c != option.default)
    if option.type is bool:
        return not option.default
    if option.type is int:
        return (option.default or 0) + 3 + (option.low or 0)
    if option.type is float:
        return 0.03
    return "value with spaces, 'quotes' and --dashes"


def again(exp):
    """The experiment that the reproducer command of exp describes."""
    argv = shlex.split(exp.command_line())
    assert argv[:2] == ["harness", "run"]
    return cli.experiment(cli.parser().parse_args(argv[1:]))


def test_every_option_is_a_field_of_the_experiment_with_its_default():
    names = {f.name: f for f in fields(Experiment)}
    for option in options.OPTIONS:
        assert option.name in names, option.name
        assert getattr(Experiment(kernels=[]), option.name) == option.default


@pytest.mark.parametrize("option", options.OPTIONS, ids=lambda o: o.name)
def test_every_option_round_trips_through_the_reproducer(option):
    value = other_value(option)
    exp = Experiment(kernels=[KernelSpec("kernel", "/src")], **{option.name: value})
    assert getattr(again(exp), option.name) == value
    # and its default too: a value equal to the default is written, so it beats a file's value
    exp = Experiment(kernels=[KernelSpec("kernel", "/src")])
    assert getattr(again(exp), option.name) == option.default


def test_all_options_at_once_round_trip():
    values = {o.name: other_value(o) for o in options.OPTIONS}
    back = again(Experiment(kernels=[KernelSpec("kernel", "/src")], **values))
    assert {name: getattr(back, name) for name in values} == values


def test_every_option_is_a_key_of_the_experiment_file(tmp_path):
    values = {o.name: other_value(o) for o in options.OPTIONS}
    lines = ['source = "/src"']
    lines += [f"{o.name} = {toml(values[o.name])}" for o in options.in_section(None)]
    for section in options.SECTIONS:
        lines.append(f"[{section}]")
        lines += [f"{o.name} = {toml(values[o.name])}" for o in options.in_section(section)]
    lines += ["[[kernels]]", 'label = "stock"']
    path = tmp_path / "all.toml"
    path.write_text("\n".join(lines) + "\n")
    exp = load(path)
    assert {name: getattr(exp, name) for name in values} == values
    # a flag set back to the default beats the file's value, in the run and in its reproducer
    back = load(path, accel="auto")
    assert back.accel == "auto" and again(back).accel == "auto"
    assert again(exp).mirror == values["mirror"]


def toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def test_bad_values_and_unknown_keys_are_one_error(tmp_path):
    with pytest.raises(UserError, match="memory_mib must be a whole number of at least 64"):
        Experiment(kernels=[], memory_mib="lots")
    with pytest.raises(UserError, match="accel must be one of auto, kvm, tcg"):
        Experiment(kernels=[], accel="xen")
    path = tmp_path / "typo.toml"
    path.write_text('source = "/src"\n[guest]\nmemroy_mib = 1\n[[kernels]]\nlabel = "a"\n')
    with pytest.raises(UserError, match=r"\[guest\]: unknown key 'memroy_mib'; did you mean 'memory_mib'\?"):
        load(path)


def test_every_option_has_a_flag_on_run(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = capsys.readouterr().out
    for option in options.OPTIONS:
        assert option.flag in text, option.flag


def test_the_options_marked_as_cache_keys_are_the_guest_images_inputs():
    """--mirror changes the guest image's cache key: a reproducer without it (as before the table)
    would build another image. The table marks it, and the reproducer carries every option."""
    from harness.guest.image import GuestImage
    assert {o.name for o in options.OPTIONS if o.cache_key} == {"image", "mirror"}
    one = GuestImage("debian-minimal", "http://one.example/debian").key
    assert GuestImage("debian-minimal", "http://two.example/debian").key != one
    exp = Experiment(kernels=[KernelSpec("kernel", "/src")], mirror="http://two.example/debian")
    assert again(exp).mirror == "http://two.example/debian"


def subcommand(name):
    parser = cli.parser()
    return next(a for a in parser._subparsers._group_actions if a.dest == "cmd").choices[name]


def test_verify_declares_each_of_its_flags_once_in_the_options():
    """verify's flags come from harness.options' command options (one declaration each), but the
    two it requires (the tree and the series); each reaches the parsed arguments with its default."""
    verify = subcommand("verify")
    own = {flag for a in verify._actions for flag in a.option_strings} - {"-h", "--help", "--quiet", "-q"}
    declared = {flag for o in options.command_options("verify") for flag in [o.flag, o.short] if flag}
    assert own - declared == {"--kernel-src", "--series"}
    assert {"--objects-only", "--selftests", "--bisect-configs", "--kernels", "--no-bisect", "--no-boot",
            "--feature", "--selftest-source"} <= declared
    args = vars(verify.parse_args(["--kernel-src", "T", "--series", "S"]))
    assert {o.name: args[o.name] for o in options.command_options("verify")} == {
        "accel": "auto", "jobs": None, "mib": 1024, "no_bisect": False, "feature": None, "bisect_configs": None,
        "kernels": None, "no_boot": False, "objects_only": False, "selftests": "auto", "selftest_source": None}
    args = vars(verify.parse_args(["--kernel-src", "T", "--series", "S", "--objects-only", "--no-boot",
                                   "--kernels", "stock", "--selftests", "cow"]))
    assert (args["objects_only"], args["no_boot"], args["kernels"], args["selftests"]) == (True, True, "stock", "cow")
    options.check_command("verify", args)
