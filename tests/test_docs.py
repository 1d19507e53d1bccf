"""The docs check: every command in the README's and docs/'s shell blocks names a program
that exists (a script, a console script of pyproject.toml, a make target), files of the
repository that exist, options its --help lists, and --set keys its config has, so that
none goes stale. (docs/own_data.md's commands are also run, by tests/test_make_dataset.py.)"""

import ast
import csv
import importlib
import io
import json
import re
import shlex
import subprocess
import sys
import tomllib
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from attngan.config import apply_overrides, load_config, merge_into
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS_WITHOUT_HELP = {"tensorboard", "sbatch", "docker", "pip", "git", "kill", "curl", "cd", "export"}
REPO_PATH = re.compile(r"^(cfg|code|scripts|docs|docker|tests)/[\w./-]+$")


def blocks(path) -> list[tuple[int, str, list[str]]]:
    """(line number of the first line, language tag, lines) of every fenced block of ``path``."""
    out, current = [], None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if current is None:
                current = (number + 1, stripped[3:].strip().lower(), [])
            else:
                out.append(current)
                current = None
        elif current is not None:
            current[2].append(line)
    return out


SHELL = ("", "bash", "sh", "shell", "console")


def commands(path):
    """(line number, argv) of every command in ``path``'s shell blocks (untagged or bash),
    continuation lines joined, comments dropped."""
    out = []
    for first, language, lines in blocks(path):
        if language not in SHELL:
            continue
        pending, start = "", first
        for number, line in enumerate(lines, first):
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


def is_project_command(argv: list[str]) -> bool:
    """A command of this project (what the check can run --help of), not a layout line, a
    config line or another tool's command."""
    head = argv[0].removeprefix(".venv/bin/")
    if head in PROGRAMS_WITHOUT_HELP:
        return False
    return (
        argv[0].startswith(".venv/bin/")
        or head.startswith("attngan-")
        or head
        in (
            "python",
            "python3",
            "make",
            "bash",
            "torchrun",
        )
    )


CASES = [(doc, number, argv) for doc in DOCS for number, argv in commands(doc) if is_project_command(argv)]


@pytest.mark.parametrize("doc,number,argv", CASES, ids=[f"{d.name}:{n}" for d, n, _ in CASES])
def test_documented_command_is_current(doc, number, argv):
    head = argv[0].removeprefix(".venv/bin/")
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
    assert ["make", "demo"] in readme and any(a[:2] == ["make", "test"] for a in readme)
    distributed = [argv for _, argv in commands(ROOT / "docs" / "distributed.md")]
    assert any(a[:2] == [".venv/bin/torchrun", "--nproc_per_node"] for a in distributed)
    assert len(CASES) > 40


def test_a_stale_option_or_file_is_caught():
    with pytest.raises(AssertionError, match="--no_such_option is not an option"):
        check_flags(("code/main.py",), ["--cfg", "cfg/bird_attn2.yml", "--no_such_option"])
    with pytest.raises(AssertionError, match="does not exist"):
        test_documented_command_is_current(
            ROOT / "README.md", 0, [".venv/bin/python", "code/main.py", "--cfg", "cfg/no_such.yml"]
        )


# ---------------------------------------------------------------- blocks other than commands

TYPED = [(doc, first, language, lines) for doc in DOCS for first, language, lines in blocks(doc)]


def typed(*languages: str):
    """Parametrise over the blocks of ``languages``; an example abridged with '…' is not
    checkable and is left out."""
    cases = [
        (doc, first, lines)
        for doc, first, language, lines in TYPED
        if language in languages and not any("…" in line for line in lines)
    ]
    return pytest.mark.parametrize("doc,first,lines", cases, ids=[f"{d.name}:{n}" for d, n, _ in cases])


@typed("yaml", "yml")
def test_yaml_block_parses_and_its_config_keys_exist(doc, first, lines):
    """A YAML block parses; one whose top-level keys are upper case is a piece of a config:
    merged into the defaults with the loader's own key and type checks."""
    data = yaml.safe_load("\n".join(lines))
    assert isinstance(data, dict), f"{doc.name}:{first}: not a mapping"
    if all(key.isupper() for key in data):
        merge_into(load_config(), data, source=f"{doc.name}:{first}")


@typed("python", "py")
def test_python_block_compiles_and_imports_what_exists(doc, first, lines):
    source = "\n".join(lines)
    tree = compile(source, f"{doc.name}:{first}", "exec", ast.PyCF_ONLY_AST)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attngan"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{doc.name}:{first}: {node.module} has no {alias.name}"


@typed("json", "jsonl")
def test_json_block_parses(doc, first, lines):
    """A JSON block (a document, or JSON Lines) parses."""
    text = "\n".join(lines)
    try:
        json.loads(text)
    except json.JSONDecodeError:
        for number, line in enumerate(lines, first):
            if line.strip():
                assert isinstance(json.loads(line), dict), f"{doc.name}:{number}: not a JSON object"


@typed("csv")
def test_csv_block_has_a_value_for_every_column(doc, first, lines):
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    assert len(rows) > 1 and all(len(row) == len(rows[0]) for row in rows), f"{doc.name}:{first}"


def curl_requests() -> list[tuple[str, int, str, str]]:
    """(doc, line, route, JSON body) of every documented curl command with a body."""
    out = []
    for doc in DOCS:
        for number, argv in commands(doc):
            if argv[0] != "curl" or "-d" not in argv:
                continue
            url = next(a for a in argv if a.startswith("http"))
            out.append((doc.name, number, "/" + url.split("/", 3)[3], argv[argv.index("-d") + 1]))
    return out


@pytest.mark.parametrize("doc,number,route,body", curl_requests())
def test_curl_body_is_valid_for_its_route(doc, number, route, body):
    """Each documented request body validates against the request model of its route in the
    server's OpenAPI schema (so a renamed or retyped field fails here)."""
    from attngan.serve import schemas  # the serve extra, which make setup installs

    models = {"/api/v1.0/bird": schemas.BirdRequest, "/api/v1.0/birds": schemas.BirdRequest}
    models["/v1/generate"] = schemas.GenerateRequest
    assert route in models, f"{doc}:{number}: {route} is not a route with a request body"
    models[route].model_validate_json(body)


def test_the_block_checks_see_every_kind():
    kinds = {language for _, _, language, _ in TYPED}
    assert {"yaml", "python", "json", "csv"} <= kinds and len(curl_requests()) >= 2


# ---------------------------------------------------------------- README's map of the code


def code_map() -> list[tuple[str, str]]:
    """(path, what lives there) of each row of README's map, in order."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- code map: begin -->", 1)[1].split("<!-- code map: end -->", 1)[0]
    rows = [line.split("|")[1:3] for line in block.splitlines() if line.startswith("| `code/")]
    return [(path.strip().strip("`"), what) for path, what in rows]


def layers() -> list[set[str]]:
    """The import contract's layers, top to bottom, as module names under attngan."""
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    return [{name.strip().removeprefix("attngan.") for name in layer.split("|")} for layer in contract["layers"]]


def test_the_map_names_every_package_and_module_in_the_contracts_order():
    package = ROOT / "code" / "attngan"
    rows = code_map()
    names = [Path(path).stem if path.endswith(".py") else Path(path).name for path, _ in rows]
    for path, what in rows:
        assert (ROOT / path).exists(), f"README's map: {path} does not exist"
        if path.endswith("/"):  # a package: every module named in its row
            modules = {p.name for p in (ROOT / path).glob("*.py")} - {"__init__.py", "__main__.py"}
            missing = {m for m in modules if f"`{m}`" not in what}
            assert not missing, f"README's map: {path} does not name {sorted(missing)}"
    present = {p.stem for p in package.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in package.iterdir() if (p / "__init__.py").is_file()
    }
    assert set(names) == present, f"README's map: missing {present - set(names)}, stale {set(names) - present}"
    order = [next(i for i, layer in enumerate(layers()) if name in layer) for name in names]
    assert order == sorted(order), "README's map: rows out of the import contract's order (pyproject.toml)"
    assert {n for layer in layers() for n in layer} == present, "pyproject's layers: a module is not in the contract"
