"""The docs check: every command in the README's and docs/'s shell blocks names a program
that exists (a script, a console script of pyproject.toml, a make target), files of the
repository that exist, options its --help lists, and --set keys its config has, so that
none goes stale. (docs/own_data.md's commands are also run, by tests/test_make_dataset.py.)"""

import re
import shlex
import subprocess
import sys
from functools import lru_cache

import pytest
import tomllib

from attngan.config import apply_overrides, load_config
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS_WITHOUT_HELP = {"tensorboard", "sbatch", "docker", "pip", "git", "kill", "curl", "cd", "export"}
REPO_PATH = re.compile(r"^(cfg|code|scripts|docs|docker|tests)/[\w./-]+$")


def commands(path):
    """(line number, argv) of every command in ``path``'s fenced code blocks, continuation
    lines joined, comments dropped."""
    out, fence, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if not fence:
            continue
        text = re.split(r"\s+#\s", " " + line.strip(), maxsplit=1)[0].strip()
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        text, pending = pending + text, ""
        if text and not text.startswith(("#", "{", "}", "|", '"', "<", "$")):
            try:
                out.append((start, shlex.split(text)))
            except ValueError:
                continue
    return out


def scripts():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def make_targets():
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


@lru_cache(maxsize=None)
def help_text(program: tuple[str, ...]) -> str:
    result = subprocess.run([sys.executable, *program, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, (program, result.stderr[-2000:])
    return result.stdout


def console_script(name: str) -> tuple[str, ...]:
    module, function = scripts()[name].split(":")
    return ("-c", f"import sys; from {module} import {function}; sys.exit({function}(sys.argv[1:]))")


def split_program(argv: list[str]):
    """-> (the program as python arguments or None, its own arguments), or None for a
    command this check does not run."""
    head, args = argv[0].removeprefix(".venv/bin/"), argv[1:]
    if head in ("python", "python3"):
        if args and args[0] == "-m":
            return ("-m", args[1]), args[2:]
        return (args[0],), args[1:]
    if head == "torchrun":
        flags = []
        while args and args[0].startswith("-") and args[0] != "-m":
            flags.append(args.pop(0))
            if flags[-1].startswith("--") and "=" not in flags[-1] and args and not args[0].startswith("-"):
                flags.append(args.pop(0))
        check_flags(("-m", "torch.distributed.run"), flags)
        return split_program(["python", *args])
    if head.startswith("attngan-"):
        assert head in scripts(), f"{head} is not a console script of pyproject.toml"
        return console_script(head), args
    return None


def check_flags(program: tuple[str, ...], args: list[str]) -> None:
    text = help_text(program)
    for arg in args:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            assert re.search(rf"(^|[\s\[,]){re.escape(flag)}\b", text), f"{flag} is not an option of {program}"


CASES = [(doc, number, argv) for doc in DOCS for number, argv in commands(doc)]


@pytest.mark.parametrize("doc,number,argv", CASES, ids=[f"{d.name}:{n}" for d, n, _ in CASES])
def test_documented_command_is_current(doc, number, argv):
    head = argv[0].removeprefix(".venv/bin/")
    if head in PROGRAMS_WITHOUT_HELP or not (
        argv[0].startswith(".venv/bin/")
        or head.startswith("attngan-")
        or head in ("python", "python3", "make", "bash", "torchrun")
    ):
        return  # not a command of this project (a layout, a config, another tool)
    for token in argv:
        if REPO_PATH.match(token) and not token.startswith("docs/") or token.startswith("docs/") and "." in token:
            assert (ROOT / token).exists(), f"{doc.name}:{number}: {token} does not exist"
    if head == "make":
        assert set(a for a in argv[1:] if a != "&&" and a != "make") <= make_targets(), f"{doc.name}:{number}"
        return
    if head == "bash":
        assert (ROOT / argv[1]).is_file()
        return
    split = split_program(argv)
    assert split is not None, f"{doc.name}:{number}: an unknown program {argv[0]!r}"
    program, args = split
    if program[0].endswith(".py"):
        assert (ROOT / program[0]).is_file(), f"{doc.name}:{number}: {program[0]} does not exist"
    check_flags(program, args)
    if "--cfg" in args and "--set" in args:
        cfg_file = ROOT / args[args.index("--cfg") + 1]
        if cfg_file.is_file():
            overrides = []
            for token in args[args.index("--set") + 1 :]:
                if token.startswith("--"):
                    break
                overrides.append(token)
            apply_overrides(load_config(cfg_file), overrides)


def test_the_check_sees_the_readme_commands():
    readme = [argv for _, argv in commands(ROOT / "README.md")]
    assert ["make", "demo"] in readme and any(a[:2] == [".venv/bin/torchrun", "--nproc_per_node"] for a in readme)
    assert len(CASES) > 40


def test_a_stale_option_or_file_is_caught():
    with pytest.raises(AssertionError, match="--no_such_option is not an option"):
        check_flags(("code/main.py",), ["--cfg", "cfg/bird_attn2.yml", "--no_such_option"])
    with pytest.raises(AssertionError, match="does not exist"):
        test_documented_command_is_current(
            ROOT / "README.md", 0, [".venv/bin/python", "code/main.py", "--cfg", "cfg/no_such.yml"]
        )
