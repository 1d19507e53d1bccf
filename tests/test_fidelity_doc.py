"""docs/fidelity.md is the account of the original that the tests and the README cite, so
what it says about this code must stay true: every path it writes in code type exists, every
``path::name`` is defined there, every config key is one of attngan.config's, its tables of
defaults, of the paper's configs and of parameter counts equal what the code loads and
builds, and every link to one of its sections lands on a heading. Nothing in the repository
may cite the notes outside it that the page replaced."""

import ast
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import yaml

from attngan.config import default_config, load_config
from attngan.models import build_discriminators, build_generator, build_image_encoder, build_text_encoder
from conftest import ROOT

DOC = ROOT / "docs" / "fidelity.md"
REPO_ROOTS = ("code", "tests", "cfg", "docs", "scripts", "data", "docker")
REPO_PATH = re.compile(rf"^(?:{'|'.join(REPO_ROOTS)})/\S*$")
DOTTED_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(?:\.[A-Z][A-Z0-9_]*)+$")
CAPS_NAME = re.compile(r"^[A-Z][A-Z0-9_]+$")
VOCABULARY = 5450  # the example vocabulary of the parameter-count table


def spans(text: str) -> list[str]:
    """Every `code`-type span of a Markdown text."""
    return re.findall(r"`([^`\n]+)`", text)


@lru_cache(maxsize=None)
def module_names(path: Path) -> frozenset[str]:
    """Names defined in a Python file: top-level functions, classes and assignments, and
    ``Class.member`` for methods, class attributes and ``self.x = ...`` in methods."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        names |= assigned(node)
        if isinstance(node, ast.ClassDef):
            for inner in ast.walk(node):
                names |= {f"{node.name}.{n}" for n in assigned(inner) if inner is not node}
                if isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Store):
                    names.add(f"{node.name}.{inner.attr}")
    return frozenset(names)


def assigned(node: ast.AST) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


@lru_cache(maxsize=None)
def package_identifiers() -> frozenset[str]:
    """Every name defined anywhere in code/attngan (classes, functions, assignments,
    attributes set on objects)."""
    out = set()
    for path in (ROOT / "code" / "attngan").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            out |= assigned(node)
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                out.add(node.attr)
    return frozenset(out)


def config_value(dotted: str):
    node = default_config()
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def span_problems(text: str) -> list[str]:
    """What is stale among the spans of ``text``: paths, ``path::name``, config keys."""
    problems = []
    for span in spans(text):
        token = span.strip()
        if REPO_PATH.match(token):
            path, _, name = token.partition("::")
            if not (ROOT / path).exists():
                problems.append(f"{token}: no such file")
            elif name and name not in module_names(ROOT / path):
                problems.append(f"{token}: {name} is not defined in {path}")
            continue
        if ".py" in token:
            problems.append(f"{token}: write a path of this repository from its root (the original's in italics)")
            continue
        key = re.split(r"[:=]", token, maxsplit=1)[0].strip()
        if DOTTED_KEY.match(key):
            try:
                config_value(key)
            except KeyError:
                problems.append(f"{token}: {key} is not a config key (attngan.config)")
        elif CAPS_NAME.match(key) and key not in default_config() and key not in package_identifiers():
            problems.append(f"{token}: neither a top-level config key nor a name defined in code/attngan")
    return problems


def tables(text: str) -> list[list[list[str]]]:
    """The Markdown tables of ``text``: rows of stripped cells, the separator row dropped."""
    out, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            out.append(current)
            current = []
    return out


def code_value(cell: str):
    """The YAML value of a cell written in code type, or None for a cell without one."""
    found = spans(cell)
    return yaml.safe_load(found[0]) if found else None


def same_value(written, actual) -> bool:
    if isinstance(actual, float) and isinstance(written, int) and not isinstance(written, bool):
        written = float(written)
    return type(written) is type(actual) and written == actual


def table_problems(text: str) -> list[str]:
    """Tables whose header starts with ``key | default`` against the config defaults;
    tables whose header names config files (``cfg/....yml``) against those files; the
    parameter-count table (header ``config | G | D (64) ...``) against the built networks."""
    problems = []
    for table in tables(text):
        header, rows = table[0], table[1:]
        if header[:2] == ["key", "default"]:
            for row in rows:
                key = spans(row[0])[0]
                try:
                    actual = config_value(key)
                except KeyError:
                    problems.append(f"defaults table: {key} is not a config key")
                    continue
                if not same_value(code_value(row[1]), actual):
                    problems.append(f"defaults table: {key} is written {row[1]}, its default is {actual!r}")
        elif header[0] == "key" and all(spans(h) and spans(h)[0].startswith("cfg/") for h in header[1:]):
            configs = [load_config(ROOT / spans(h)[0]) for h in header[1:]]
            for row in rows:
                key = spans(row[0])[0]
                for h, cfg, cell in zip(header[1:], configs, row[1:]):
                    if not spans(cell):
                        continue
                    node = cfg
                    for part in key.split("."):
                        node = node[part]
                    if not same_value(code_value(cell), node):
                        problems.append(f"{spans(h)[0]}: {key} is written {cell}, the file gives {node!r}")
        elif header[:2] == ["config", "G"]:
            for row in rows:
                counts = parameter_counts(spans(row[0])[0])
                for column, cell in zip(header[1:], row[1:]):
                    written = int(cell.replace(",", "")) if cell else None
                    if written != counts.get(column):
                        problems.append(f"{row[0]} {column}: written {cell!r}, built {counts.get(column)}")
    return problems


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(cfg_file: str) -> dict[str, int]:
    """Parameters of G, each D (by the image size it judges) and the text encoder as the
    builders make them for ``cfg_file``."""
    cfg = load_config(ROOT / cfg_file)
    with torch.device("meta"):  # shapes only
        net_g, nets_d = build_generator(cfg, initialise=False), build_discriminators(cfg, initialise=False)
        text = build_text_encoder(cfg, VOCABULARY)
    branches = cfg.TREE.BRANCH_NUM
    sizes = [64 * 2 ** (branches - 1)] if cfg.GAN.B_DCGAN else [64 * 2**i for i in range(branches)]
    counts = {"G": count(net_g), "text encoder": count(text)}
    counts.update({f"D ({size})": count(net) for size, net in zip(sizes, nets_d)})
    return counts


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


def repository_texts():
    """(path, text) of every text file git tracks or would track (not the datasets,
    checkpoints, build files or outputs that a checkout may hold, which .gitignore names)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    files = [ROOT / name for name in listed if Path(name).suffix in ("", ".py", ".md", ".yml", ".sh", ".toml")]
    return [(p, p.read_text(encoding="utf-8", errors="replace")) for p in files if p.is_file()]


def link_problems(doc_text: str, texts) -> list[str]:
    """Links to sections of the page (its path, then ``#`` and an anchor; inside the page a
    Markdown link to ``#`` and an anchor) that name no heading."""
    known, problems = anchors(doc_text), []
    for path, text in texts:
        for anchor in re.findall(r"fidelity\.md#([\w-]+)", text):
            if anchor not in known:
                problems.append(f"{path.relative_to(ROOT)}: docs/fidelity.md#{anchor} is no heading")
    for anchor in re.findall(r"\]\(#([\w-]+)\)", doc_text):
        if anchor not in known:
            problems.append(f"docs/fidelity.md: #{anchor} is no heading")
    return problems


def test_every_code_location_and_config_key_exists():
    assert span_problems(DOC.read_text(encoding="utf-8")) == []


def test_tables_match_the_defaults_the_configs_and_the_networks():
    text = DOC.read_text(encoding="utf-8")
    assert table_problems(text) == []
    kinds = [t[0][:2] for t in tables(text)]
    assert ["key", "default"] in kinds and ["config", "G"] in kinds and kinds.count(["key", "`cfg/eval_bird.yml`"]) == 1


def test_encoder_sizes_written_in_the_text():
    """The text encoder's size formula and the image encoder's trainable share."""
    cfg = load_config(ROOT / "cfg/DAMSM/bird.yml")
    with torch.device("meta"):
        text, image = build_text_encoder(cfg, VOCABULARY), build_image_encoder(cfg)
    rnn = count(text) - 300 * VOCABULARY
    trainable = sum(p.numel() for p in image.parameters() if p.requires_grad)
    doc = " ".join(DOC.read_text(encoding="utf-8").split())
    assert f"300 · vocabulary + {rnn:,}" in doc
    assert f"{trainable:,} trainable parameters of {count(image):,}" in doc


def test_links_to_the_page_land_on_headings():
    assert link_problems(DOC.read_text(encoding="utf-8"), repository_texts()) == []


def test_nothing_cites_notes_outside_the_repository():
    """The page replaced notes kept beside the checkout; no file may point there again."""
    outside = ("FIDELITY" + ".md", "shared/" + "reference", "../" + "shared")
    cited = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path, text in repository_texts()
        for n, line in enumerate(text.splitlines(), 1)
        if any(o in line for o in outside)
    ]
    assert cited == []


@pytest.mark.parametrize(
    "stale,message",
    [
        ("`code/attngan/generator.py`", "no such file"),
        ("`code/attngan/losses.py::word_loss`", "word_loss is not defined"),
        ("`code/attngan/models/encoders.py::RNN_ENCODER.init_state`", "init_state is not defined"),
        ("`TRAIN.SMOOTH.GAMMA4`", "not a config key"),
        ("`FIXES.ATTENTION_MASK: True`", None),
        ("`FIXES.ATTENTION_MASKS: True`", "not a config key"),
        ("`ENCODER_LR`", "neither a top-level config key"),
        ("`losses.py`", "write a path of this repository"),
    ],
)
def test_a_stale_location_or_key_is_caught(stale, message):
    problems = span_problems(f"text with {stale} in it")
    assert problems == [] if message is None else (len(problems) == 1 and message in problems[0])


def test_a_stale_table_or_link_is_caught():
    defaults = "| key | default | x |\n|---|---|---|\n| `EMA.DECAY` | `0.99` | y |\n| `RUN.TF32` | `0` | z |\n"
    assert [p.split(" is written")[0] for p in table_problems(defaults)] == [
        "defaults table: EMA.DECAY",
        "defaults table: RUN.TF32",  # 0 is not False
    ]
    configs = "| key | `cfg/coco_attn2.yml` |\n|---|---|\n| `TRAIN.SMOOTH.LAMBDA` | `5.0` |\n| `GAN.R_NUM` | `3` |\n"
    assert len(table_problems(configs)) == 1 and "LAMBDA is written" in table_problems(configs)[0]
    counts = "| config | G | D (256) |\n|---|---|---|\n| `cfg/bird_attnDCGAN2.yml` | 6,638,960 | 71,858,946 |\n"
    assert table_problems(counts) == ["`cfg/bird_attnDCGAN2.yml` D (256): written '71,858,946', built 71850753"]
    page = "## Where we differ, and why\n[a](#where-we-differ-and-why) [b](#where-we-differ)\n"
    readme = [(ROOT / "README.md", "see docs/fidelity.md#where-we-differ-and-why and docs/fidelity.md#losses")]
    assert link_problems(page, readme) == [
        "README.md: docs/fidelity.md#losses is no heading",
        "docs/fidelity.md: #where-we-differ is no heading",
    ]
