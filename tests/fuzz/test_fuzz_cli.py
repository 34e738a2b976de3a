"""The ``cosmic`` command line's arguments, fuzzed, without running a command.

Every argv (random tokens; a real command's path with its own and invented options,
values of every kind, unicode, very long ones; ``--help`` anywhere) is parsed the
way :func:`cosmic_app.cli.main` dispatches it, down to the command it names, but that
command's callback is never called: a fuzzer must not start stacks, create topics or
adopt a replay. The outcome of parsing is a click usage error (exit 2), help or the
version (exit 0), another click error or a :class:`~cosmic.errors.CosmicError` with
its message, or the parsed parameters; anything else is a bug in an option's type or
callback.

An argv that parsing refuses (or answers with help) then goes through ``main()``
itself: the process exits with that code and a message, never a traceback. That is
safe because ``main()`` reaches a command's callback only after the command's own
arguments parsed, and every group's callback on the way does nothing (checked below).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import click
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cosmic.errors import CosmicError
from cosmic_app.cli import build_cli, main
from tests.fuzz.conftest import PROFILE

CLI = build_cli()


def _walk(cmd: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...],
                                                                       click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _walk(sub, (*path, name))


COMMANDS = dict(_walk(CLI, ()))
PATHS = sorted(COMMANDS)


def _noop() -> None:
    """A group's callback: nothing but its docstring."""


def test_every_group_callback_does_nothing() -> None:
    """What makes it safe to hand refused argv to main(): the groups it passes run nothing."""
    groups = {p: c for p, c in COMMANDS.items() if isinstance(c, click.Group)}
    assert len(groups) > 10
    for path, group in groups.items():
        assert group.callback is not None, path
        assert group.callback.__code__.co_code == _noop.__code__.co_code, (
            f"cosmic {' '.join(path)}: the group's callback runs code "
            f"({inspect.getsourcefile(group.callback)})")


@dataclass(frozen=True)
class Parsed:
    """Parsing reached the command; its callback was not called."""

    command: click.Command
    params: dict[str, object]


def parse(argv: list[str]) -> Parsed:
    """Parse ``argv`` as ``main()`` would, down to the command it names (raises what
    parsing raises); no callback but the options' own runs."""
    ctx = CLI.make_context("cosmic", list(argv))
    cmd: click.Command = CLI
    while isinstance(cmd, click.Group):
        args = [*ctx._protected_args, *ctx.args]
        if not args:
            if cmd.invoke_without_command:
                break
            raise click.UsageError("Missing command.", ctx)  # what Group.invoke says
        name, sub, rest = cmd.resolve_command(ctx, args)
        assert name is not None and sub is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return Parsed(cmd, dict(ctx.params))


def outcome(argv: list[str]) -> tuple[str, int]:
    """("parsed", 0), or what parsing refused with and the exit code it means."""
    # No terminal and an empty stdin: a prompt (a confirmation) ends as an Abort.
    with CliRunner().isolation(input=""):
        try:
            parsed = parse(argv)
        except click.exceptions.Exit as exc:
            return "exit", exc.exit_code
        except click.UsageError as exc:
            assert exc.format_message()
            return "usage", exc.exit_code
        except click.ClickException as exc:
            assert exc.format_message()
            return "click", exc.exit_code
        except click.Abort:
            return "abort", 130
        except CosmicError as exc:
            assert str(exc)
            return "error", 1
    assert set(parsed.params) == {p.name for p in parsed.command.params}
    return "parsed", 0


def through_main(argv: list[str], code: int) -> None:
    """``main(argv)`` ends the process with ``code`` and a message, not a traceback."""
    with CliRunner().isolation(input="") as (out, err, _):
        try:
            main(argv)
        except SystemExit as exc:
            got = exc.code if isinstance(exc.code, int) else 1
            assert got == code, (argv, got, err.getvalue()[-500:])
        else:
            assert code == 0, argv  # help or the version, printed without an exit
        text = out.getvalue() + err.getvalue()
    assert b"Traceback" not in text and text.strip(), argv


# What an argv can hold: any character but NUL (an exec'd argument ends at one), lone
# surrogates included (how Python decodes bytes that are not UTF-8).
CHARS = st.characters(exclude_categories=(), exclude_characters="\x00")
TEXT = st.text(CHARS, max_size=40) | st.text(CHARS, max_size=5000).map(lambda t: t * 3)
VALUE = (TEXT | st.integers().map(str) | st.floats().map(str)
         | st.sampled_from(["", "-", "--", "-1", "0", "nan", "inf", "1e999", "2026-13-45",
                            "/dev/null", "/nonexistent/x", "..", "=", "a=b", "\udcff"]))


def typed(param: click.Parameter) -> st.SearchStrategy[str]:
    """Values of the parameter's type (and, one time in four, anything at all)."""
    kind = param.type
    if isinstance(kind, click.Choice):
        good: st.SearchStrategy[str] = st.sampled_from([str(c) for c in kind.choices])
    elif isinstance(kind, click.types.IntParamType):
        good = st.integers().map(str)
    elif isinstance(kind, click.types.FloatParamType):
        good = st.floats().map(str)
    elif isinstance(kind, click.types.BoolParamType):
        good = st.sampled_from(["true", "false", "1", "0", "yes", "off"])
    elif isinstance(kind, click.Path):
        good = st.sampled_from([".", "/dev/null", "/nonexistent/x.avro", "/tmp"])
    else:
        good = VALUE
    return st.one_of(good, good, good, VALUE)


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    """A command's path, then some of its parameters (with values of their types), a few
    invented words and help asked for now and then, in any order."""
    path = draw(st.sampled_from(PATHS))
    params = COMMANDS[path].params
    words: list[list[str]] = []
    chosen = draw(st.lists(st.sampled_from(params), max_size=6)) if params else []
    for param in [p for p in params if p.required] + chosen:
        if isinstance(param, click.Option):
            flag = [draw(st.sampled_from(param.opts + param.secondary_opts))]
            words.append(flag if param.is_flag or param.count else [*flag, draw(typed(param))])
        else:
            words.append([draw(typed(param))])
    if draw(st.integers(0, 3)) == 0:
        words.append([draw(VALUE | st.sampled_from(["--help", "-h", "--nope", "--version"]))])
    order = draw(st.permutations(range(len(words)))) if words else []
    args = [*path, *(w for i in order for w in words[i])]
    if draw(st.integers(0, 4)) == 0 and args:  # a value glued on with "="
        i = draw(st.integers(0, len(args) - 1))
        args[i] = f"{args[i]}={draw(VALUE)}"
    return args


ARGV = argv() | st.lists(VALUE, max_size=6)


@settings.get_profile(PROFILE)
@given(args=ARGV)
@example(args=[])
@example(args=["--version"])
@example(args=["replay", "--at-tick", "x"])
@example(args=["jobs", "run", "warehouse", "--date", "2026-02-30"])
@example(args=["watch", "--center", "1,2", "--radius", "nan"])
def test_any_argv_parses_or_is_refused_with_a_message(args: list[str]) -> None:
    kind, code = outcome(args)
    assert kind in ("parsed", "exit", "usage", "click", "abort", "error")
    if kind in ("exit", "usage"):
        through_main(args, code)
