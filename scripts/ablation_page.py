"""docs/ablation.md from the ablation study's finished runs (scripts/ablation.py): the
tables (mean ± std over seeds, the paper's numbers beside ours), one matplotlib figure a
question, what the numbers say (computed), the command, the machine and the time. Runs
not finished yet are marked so. The reading, written by a person, is kept from the page
being replaced (between the READING markers)."""

from __future__ import annotations

import datetime
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

# The paper's Table 2 (CUB, AttnGAN1, R-precision %); lambda 0 is its "w/o DAMSM" row.
PAPER_R_PRECISION = {0.0: 10.37, 0.1: 16.55, 1.0: 34.96, 5.0: 58.65, 10.0: 63.87}
FORK_CLAIM = "3–5 % lower validation word and sentence losses with TEXT_FC (one run each)"
READING = re.compile(r"<!-- READING -->\n(.*?)<!-- /READING -->", re.S)
NOT_RUN = "not yet run"
# Object match's chance is each generator's own (its images against another image's caption:
# a generator that paints many colours scores high on any caption), so object match and
# attention are compared across λ by how far they stand above their chance, in points.
GAN_METRICS = [
    ("r_precision", "R-precision"),
    ("colour_lift", "named colour drawn, above its chance"),
    ("shape_lift", "named colour and shape, above its chance"),
    ("attention_lift", "G attention in the object, above chance"),
]
LIFTS = {"colour_lift": "colour", "shape_lift": "shape", "attention_lift": "attention"}
DAMSM_FINAL = [
    ("w_loss", "validation word loss", False),
    ("s_loss", "validation sentence loss", False),
    ("top1_image_to_text", "top-1 retrieval image→text", True),
    ("top1_text_to_image", "top-1 retrieval text→image", True),
    ("word_swap_shape", "word swap: true shape first", True),
    ("word_swap_colour", "word swap: true colour first", True),
]


def finished(study, runs) -> dict[Any, dict]:
    """Each finished run's done.json."""
    out = {}
    for run in runs:
        path = study.folder(run) / "done.json"
        if path.is_file():
            out[run] = json.loads(path.read_text())
    return out


def mean_std(values: list[float], percent: bool, unit: str = " %", sign: str = "") -> str:
    """'m ± s (n)', percentages with ``percent`` (``unit`` after them, ``sign`` "+" to sign
    the mean); the std over seeds (ddof 1), '–' for one seed."""
    if not values:
        return NOT_RUN
    scale, unit, digits = (100, unit, 1) if percent else (1, "", 3)
    m = np.mean(values) * scale
    s = f"{np.std(values, ddof=1) * scale:.{digits}f}" if len(values) > 1 else "–"
    return f"{m:{sign}.{digits}f} ± {s}{unit} (n={len(values)})"


def points(values: list[float]) -> str:
    return mean_std(values, True, unit=" pts", sign="+")


def ranks(values: list[float]) -> np.ndarray:
    """Average ranks (ties share theirs), for Spearman's correlation."""
    values = np.asarray(values, dtype=float)
    order = values.argsort()
    r = np.empty(len(values))
    r[order] = np.arange(len(values))
    for v in np.unique(values):
        r[values == v] = r[values == v].mean()
    return r


def spearman(x: list[float], y: list[float]) -> float:
    if len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


# ---- question 1: the DAMSM loss weight --------------------------------------------------
def lambda_cells(study, done) -> dict[float, dict[str, list[float]]]:
    cells: dict[float, dict[str, list[float]]] = {lam: defaultdict(list) for lam in study.lambdas}
    for run, record in done.items():
        if run.kind == "gan":
            results = record["results"]
            for key, value in results.items():
                cells[run.lam][key].append(value)
            for lift in LIFTS:
                cells[run.lam][lift].append(run_value(results, lift))
    return cells


def lambda_table(study, done) -> list[str]:
    cells = lambda_cells(study, done)
    lines = [
        "| λ | R-precision, ours | paper, AttnGAN1 on CUB | named colour drawn | its chance | above it "
        "| named colour and shape | its chance | above it | G attention in the object, above chance |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lam in study.lambdas:
        paper = PAPER_R_PRECISION.get(float(lam))
        paper_text = "–" if paper is None else f"{paper:.2f} %" + (" (w/o DAMSM)" if lam == 0 else "")
        c = cells[lam]
        lines.append(
            f"| {lam:g} | {mean_std(c['r_precision'], True)} | {paper_text} "
            + "".join(
                f"| {mean_std(c[key], True)} | {mean_std(c[f'{key}_chance'], True)} | {points(c[f'{key}_lift'])} "
                for key in ("colour", "shape")
            )
            + f"| {points(c['attention_lift'])} |"
        )
    results = [r["results"] for run, r in done.items() if run.kind == "gan"]
    if results:
        lines.append(
            f"| chance | {100 * results[0]['r_precision_chance']:.1f} % | | | each run's own | | | each run's own | "
            f"| {100 * results[0]['attention_chance']:.1f} % (a peak drawn at random) |"
        )
    return lines


def run_value(results: dict, key: str) -> float:
    """A run's value of a GAN_METRICS key (a lift is the value less its chance)."""
    if key in LIFTS:
        return results[LIFTS[key]] - results[f"{LIFTS[key]}_chance"]
    return results[key]


def lambda_findings(study, done) -> list[str]:
    """Computed statements: the order of the means and Spearman's correlation over runs."""
    runs = [(run.lam, record["results"]) for run, record in done.items() if run.kind == "gan"]
    if not runs:
        return ["- No AttnGAN run has finished yet."]
    cells = lambda_cells(study, done)
    present = [lam for lam in study.lambdas if cells[lam]["r_precision"]]
    out = []
    for key, name in GAN_METRICS:
        means = [np.mean(cells[lam][key]) for lam in present]
        steps = np.diff(means)
        rho = spearman([lam for lam, _ in runs], [run_value(r, key) for _, r in runs])
        trend = (
            "rises at every step"
            if len(steps) and (steps > 0).all()
            else "falls at every step"
            if len(steps) and (steps < 0).all()
            else "does not move one way"
        )
        unit = " points" if key in LIFTS else " %"
        out.append(
            f"- {name}: the mean over seeds {trend} of λ = {', '.join(f'{x:g}' for x in present)} "
            f"({' → '.join(f'{100 * m:.1f}' for m in means)}{unit}); Spearman's ρ between λ and the "
            f"{len(runs)} runs' values: {rho:.2f}."
        )
    return out


def lambda_figure(study, done, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = lambda_cells(study, done)
    x = np.arange(len(study.lambdas))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    paper = [PAPER_R_PRECISION.get(float(lam), np.nan) for lam in study.lambdas]
    left.plot(x, paper, "k--s", label="paper, AttnGAN1 on CUB (Table 2)")
    panels = [(left, "r_precision", "C0")] + [
        (right, k, c) for k, c in (("colour_lift", "C1"), ("shape_lift", "C2"), ("attention_lift", "C3"))
    ]
    names = dict(GAN_METRICS)
    results = [r["results"] for run, r in done.items() if run.kind == "gan"]
    if results:
        left.axhline(100 * results[0]["r_precision_chance"], color="C0", linestyle=":", linewidth=1)
    right.axhline(0, color="k", linestyle=":", linewidth=1)
    for axes, key, colour in panels:
        for i, lam in enumerate(study.lambdas):
            values = 100 * np.asarray(cells[lam][key])
            axes.plot(np.full(len(values), i), values, "o", color=colour, alpha=0.4, markersize=4)
        means = [100 * np.mean(cells[lam][key]) if cells[lam][key] else np.nan for lam in study.lambdas]
        axes.plot(x, means, "-o", color=colour, label=f"{names[key]}, ours (dots: seeds)")
    for axes, title, ylim in (
        (left, "R-precision (%)", (0, 100)),
        (right, "object match and attention, points above chance", (-20, 60)),
    ):
        axes.set_xticks(x, [f"{lam:g}" for lam in study.lambdas])
        axes.set_xlabel("λ (TRAIN.SMOOTH.LAMBDA); dotted: chance")
        axes.set_title(title)
        axes.set_ylim(*ylim)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    if not any(run.kind == "gan" for run in done):
        left.text(0.5, 0.5, "no AttnGAN run finished yet", transform=left.transAxes, ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---- question 2: the FC layer -----------------------------------------------------------
def fc_arms(done) -> dict[bool, dict[int, dict]]:
    """{with FC: {seed: results}} of the finished DAMSM runs."""
    arms: dict[bool, dict[int, dict]] = {False: {}, True: {}}
    for run, record in done.items():
        if run.kind == "damsm":
            arms[run.fc][run.seed] = record["results"]
    return arms


def paired_differences(arms, key: str, relative: bool) -> list[float]:
    """With FC minus without, seed by seed over the seeds both arms have: relative to the
    value without (losses) or absolute (accuracies, in points)."""
    seeds = [s for s in sorted(set(arms[False]) & set(arms[True])) if key in arms[True][s]["final"]]
    pairs = [(arms[True][s]["final"][key], arms[False][s]["final"][key]) for s in seeds]
    return [a / b - 1 if relative else a - b for a, b in pairs]


def fc_table(done) -> list[str]:
    arms = fc_arms(done)
    lines = [
        "| last epoch | without TEXT_FC | with TEXT_FC | with minus without, seed by seed (losses: relative) |",
        "|---|---|---|---|",
    ]
    for key, name, percent in DAMSM_FINAL:
        values = {fc: [r["final"][key] for r in arms[fc].values() if key in r["final"]] for fc in (False, True)}
        diffs = paired_differences(arms, key, relative=not percent)
        diff = mean_std(diffs, True).replace(" %", " % rel." if not percent else " pts") if diffs else NOT_RUN
        lines.append(f"| {name} | {mean_std(values[False], percent)} | {mean_std(values[True], percent)} | {diff} |")
    return lines


def epoch_table(done) -> list[str]:
    arms = fc_arms(done)
    epochs = sorted({int(e) for arm in arms.values() for r in arm.values() for e in r["epochs"]})
    if not epochs:
        return [f"Validation losses per epoch: {NOT_RUN}."]
    lines = [
        "| epoch | word loss, without FC | word loss, with FC | sentence loss, without FC | sentence loss, with FC |",
        "|---|---|---|---|---|",
    ]
    for epoch in epochs:
        cells = [
            mean_std([r["epochs"][str(epoch)][key] for r in arms[fc].values() if str(epoch) in r["epochs"]], False)
            for key in ("w_loss", "s_loss")
            for fc in (False, True)
        ]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return lines


def fc_findings(done) -> list[str]:
    arms = fc_arms(done)
    if not (set(arms[False]) & set(arms[True])):
        return ["- No seed has both DAMSM runs finished yet."]
    out = []
    for key, name in (("w_loss", "word loss"), ("s_loss", "sentence loss")):
        diffs = np.asarray(paired_differences(arms, key, relative=True))
        base = [r["final"][key] for r in arms[False].values()]
        noise = (
            f"{100 * np.std(base, ddof=1) / np.mean(base):.1f} % of its mean" if len(base) > 1 else "unknown (one seed)"
        )
        line = (
            f"- Validation {name} with TEXT_FC: {100 * diffs.mean():+.1f} % against without, over {len(diffs)} "
            f"seed(s) (per seed: {', '.join(f'{100 * d:+.1f}' for d in diffs)} %); the seed-to-seed spread "
            f"of the loss without FC: {noise}."
        )
        if len(diffs) > 1:
            t = diffs.mean() / (diffs.std(ddof=1) / np.sqrt(len(diffs)))
            line += f" Mean difference over its standard error: {t:.1f}."
        out.append(line)
    return out


def fc_figure(done, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    arms = fc_arms(done)
    fig, panels = plt.subplots(1, 2, figsize=(11, 4.2))
    for axes, (key, name) in zip(panels, (("w_loss", "word loss"), ("s_loss", "sentence loss"))):
        for fc, colour in ((False, "C0"), (True, "C1")):
            curves = [
                (
                    np.array(sorted(int(e) for e in r["epochs"])),
                    np.array([r["epochs"][e][key] for e in sorted(r["epochs"], key=int)]),
                )
                for r in arms[fc].values()
            ]
            for epochs, values in curves:
                axes.plot(epochs, values, color=colour, alpha=0.3, linewidth=1)
            if curves:
                length = min(len(e) for e, _ in curves)
                stacked = np.stack([v[:length] for _, v in curves])
                epochs = curves[0][0][:length]
                label = f"{'with' if fc else 'without'} TEXT_FC, mean of {len(curves)} seed(s) (thin: each seed)"
                axes.plot(epochs, stacked.mean(0), "-o", color=colour, label=label)
        # Logarithmic: the losses fall by two orders of magnitude, and the claim is about their ratio.
        axes.set_yscale("log")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(f"DAMSM validation {name}")
        axes.grid(alpha=0.3)
        if any(arms.values()):
            axes.legend(fontsize=8)
        else:
            axes.text(0.5, 0.5, "no DAMSM run finished yet", transform=axes.transAxes, ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---- the page ---------------------------------------------------------------------------
def every_run_table(study, runs, done) -> list[str]:
    lines = ["| run | state | time | headline numbers | commit |", "|---|---|---|---|---|"]
    for run in runs:
        record = done.get(run)
        if record is None:
            timing = study.folder(run) / "timing.json"
            state = (
                f"started, {json.loads(timing.read_text())['seconds']:.0f} s in earlier sessions"
                if timing.is_file()
                else "started, not finished"
                if (study.folder(run) / "log.txt").is_file()
                else NOT_RUN
            )
            lines.append(f"| {run.label} | {state} | | | |")
            continue
        r = record["results"]
        if run.kind == "damsm":
            f = r["final"]
            head = f"word loss {f['w_loss']:.3f}, sentence loss {f['s_loss']:.3f}, top-1 i→t {100 * f['top1_image_to_text']:.1f} %"
        else:
            head = f"R-precision {100 * r['r_precision']:.1f} %, colour {100 * r['colour']:.1f} %, shape {100 * r['shape']:.1f} %"
        sessions = f" in {record['sessions']} sessions" if record["sessions"] > 1 else ""
        lines.append(
            f"| {run.label} | finished {record['finished']} | {record['seconds']:.0f} s{sessions} | {head} | {record['commit']} |"
        )
    return lines


def recipe_text(study) -> str:
    c = study.configs
    d, g = c["damsm"]["TRAIN"], c["gan"]["TRAIN"]
    data = study.data
    text = (
        f"Data: {data['num_images']} generated images (`scripts/make_shapes.py` settings: at most "
        f"{data['max_objects']} object, object scale {data['object_scale']}, colours {', '.join(data['colors'])}), "
        f"the demo's. DAMSM: `cfg/DAMSM/shapes.yml`, {d['MAX_EPOCH']} epochs, batch {d['BATCH_SIZE']}"
        f"{', overrides ' + ' '.join(study.damsm_set) if study.damsm_set else ''}."
    )
    if not has_gan_runs(study):
        return text + " No AttnGAN runs (no --lambdas or no --gan-seeds)."
    return text + (
        f" AttnGAN: `cfg/shapes_attn2.yml`, {g['MAX_EPOCH']} epochs, batch {g['BATCH_SIZE']}"
        f"{', overrides ' + ' '.join(study.gan_set) if study.gan_set else ''}"
        f", against the shared DAMSM ({study.shared_damsm.label}). Scored by `attngan-eval --cfg cfg/eval_shapes.yml` on "
        f"{study.eval_samples} test captions (the same captions and noise for every generator)."
    )


def has_gan_runs(study) -> bool:
    return bool(study.lambdas and study.gan_seeds)


def lambda_section(study, done, figure: Path) -> list[str]:
    """Question 1's tables, figure and findings; one line when the study has no AttnGAN runs."""
    if not has_gan_runs(study):
        return ["Not part of this study: it has no AttnGAN runs (no --lambdas or no --gan-seeds)."]
    lambda_figure(study, done, figure)
    return [
        "Mean ± std over seeds (n: seeds finished). The paper's column is AttnGAN1 (two stages, one attention",
        "model, as ours) on CUB at 128 px after 600 epochs; ours, the demo's short recipe on shapes: the",
        "comparison is of directions, not of levels.",
        "",
        *lambda_table(study, done),
        "",
        f"![R-precision and object match against λ]({figure.name})",
        "",
        "What the numbers say (computed by the script):",
        "",
        *lambda_findings(study, done),
    ]


def machine_text(done) -> str:
    machines = sorted({json.dumps(r["machine"], sort_keys=True) for r in done.values()})
    if not machines:
        return "Machine: no run finished yet."
    parts = []
    for text in machines:
        m = json.loads(text)
        parts.append(
            f"{m['cpu']}, {m['cores']} cores, torch on {m['torch_threads']} thread(s)"
            + (f", {m['gpu']}" if "gpu" in m else "")
        )
    return "Machine (lscpu): " + "; ".join(parts) + "."


def wall_clock_text(record) -> str:
    """The invocations' wall-clock time (runs side by side under --jobs take less than their sum)."""
    timed = [i for i in (record or {}).get("invocations", []) if "seconds" in i]
    if not timed:
        return "."
    wall = sum(i["seconds"] for i in timed)
    untimed = len(record["invocations"]) - len(timed)
    return (
        f"; wall-clock {wall / 60:.0f} min over {len(timed)} invocation(s)"
        + (f" (and {untimed} not timed, interrupted or from before the script timed them)" if untimed else "")
        + "."
    )


def write_page(study, runs, page: Path) -> Path:
    """Write ``page`` and its two figures (``<stem>_lambda.png``, ``<stem>_fc.png``) from
    the runs finished so far; -> ``page``."""
    done = finished(study, runs)
    page.parent.mkdir(parents=True, exist_ok=True)
    lambda_png, fc_png = page.with_name(f"{page.stem}_lambda.png"), page.with_name(f"{page.stem}_fc.png")
    fc_figure(done, fc_png)
    old = page.read_text() if page.is_file() else ""
    kept = READING.search(old)
    reading = kept.group(1) if kept else "Not written yet: the reading is written by a person from the numbers above.\n"
    record = json.loads((study.out / "study.json").read_text()) if (study.out / "study.json").is_file() else None
    command = record["invocations"][-1]["command"] if record else "python scripts/ablation.py"
    seconds = sum(r["seconds"] for r in done.values())
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = [
        "# Ablations: the DAMSM loss weight λ and the text encoder's FC layer",
        "",
        f"Written by `scripts/ablation.py` from its runs on {when}: **{len(done)} of {len(runs)} runs finished**"
        + (f" (the others: {NOT_RUN}, or started)." if len(done) < len(runs) else "."),
        "No CUB or COCO reaches our machines; the claims are about directions, measured here on the",
        "demo's generated shapes, where object match and attention localisation have ground truth.",
        "",
        "## How it was run",
        "",
        "```shell",
        command,
        "```",
        "",
        "`make ablation` runs it into `output/ablation`; the same command again continues it (a finished run is",
        "never redone, an interrupted one continues from its training state with `--resume`); `--jobs N` runs",
        "N runs side by side, each in a worker process on its share of the cores (the AttnGAN runs wait for",
        "the shared DAMSM); `--page-only` rewrites this page from the runs finished so far.",
        "",
        recipe_text(study),
        "",
        machine_text(done)
        + f" Time of the finished runs: {seconds / 60:.0f} min ({seconds / 3600:.2f} h) in all"
        + wall_clock_text(record),
        "",
        "## 1. Does R-precision rise with λ, as in the paper's Table 2? Does object match follow?",
        "",
        *lambda_section(study, done, lambda_png),
        "",
        "## 2. Does TEXT_FC lower DAMSM's validation losses by 3–5 %, beyond the seed-to-seed noise?",
        "",
        f"The fork's claim: {FORK_CLAIM}. Mean ± std over seeds; the relative difference is",
        "taken seed by seed (the same seed with and without the layer), then averaged.",
        "",
        *fc_table(done),
        "",
        *epoch_table(done),
        "",
        f"![DAMSM validation losses per epoch with and without TEXT_FC]({fc_png.name})",
        "",
        "What the numbers say (computed by the script):",
        "",
        *fc_findings(done),
        "",
        "## Every run",
        "",
        *every_run_table(study, runs, done),
        "",
        "## Reading",
        "",
        "<!-- READING -->",
        reading.rstrip("\n"),
        "<!-- /READING -->",
        "",
    ]
    page.write_text("\n".join(text))
    return page
