"""The ablation study (``make ablation``, docs/ablation.md): the paper's and the Python-3
fork's claims measured on the demo's shapes data and recipe.

1. The DAMSM loss weight (TRAIN.SMOOTH.LAMBDA in 0, 0.1, 1, 5, 10; the paper's Table 2):
   AttnGAN trained with the demo's recipe (cfg/shapes_attn2.yml) against one DAMSM shared
   by every run, each final generator scored by ``attngan-eval`` (cfg/eval_shapes.yml:
   R-precision with the shared DAMSM, generator attention localisation, object match).
2. The text encoder's FC layer (DAMSM.TEXT_FC): DAMSM (cfg/DAMSM/shapes.yml) with and
   without it, the same epochs, its validation losses per epoch, top-1 retrieval and the
   word-swap probe. The shared DAMSM of (1) is the run without FC of the first seed.

Every run lives in its own folder under ``--out``. A finished run (its ``done.json``) is
never redone; an interrupted one (Ctrl-C, SIGTERM, a kill) continues from its
``Model/training_state.pth`` with the training commands' ``--resume``. One progress line a
run; each run's own log is its ``log.txt``. ``--jobs N`` runs N runs at a time, each in a
worker process; workers (or several invocations on one ``--out``) share the plan through a
lock on each run's folder, and AttnGAN runs wait for the shared DAMSM. The page (tables, figures, the paper's numbers
beside ours) is written from whatever runs have finished, the others marked not yet run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import functools
import json
import logging
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402
from ablation_page import write_page  # noqa: E402
from demo import DEMO_DATA, prepare_data  # noqa: E402

from attngan.cli import eval_main, pretrain_damsm_main  # noqa: E402
from attngan.cli import main as attngan_main  # noqa: E402
from attngan.config import ConfigError, apply_overrides, as_plain, differences, load_config  # noqa: E402
from attngan.errors import USER_ERRORS, report  # noqa: E402
from attngan.files import write_atomic  # noqa: E402

DAMSM_CFG, GAN_CFG, EVAL_CFG = "cfg/DAMSM/shapes.yml", "cfg/shapes_attn2.yml", "cfg/eval_shapes.yml"
STATE = "Model/training_state.pth"
# A kill (not a SIGTERM, which saves at once) loses at most this much of a run.
STATE_EVERY = "RUN.STATE_EVERY_MINUTES=5"
# How often a worker with nothing to take looks again (runs take minutes).
POLL_SECONDS = 5.0


@dataclass(frozen=True)
class Run:
    """One cell of the study: a DAMSM run (``fc``: with TEXT_FC) or an AttnGAN run (``lam``)."""

    kind: str  # "damsm" or "gan"
    seed: int
    fc: bool = False
    lam: float | None = None

    @property
    def name(self) -> str:
        if self.kind == "damsm":
            return f"damsm/fc{int(self.fc)}_seed{self.seed}"
        return f"gan/lambda{self.lam:g}_seed{self.seed}"

    @property
    def label(self) -> str:
        if self.kind == "damsm":
            return f"DAMSM {'with' if self.fc else 'without'} TEXT_FC, seed {self.seed}"
        return f"AttnGAN lambda {self.lam:g}, seed {self.seed}"


@dataclass
class Study:
    """The plan and the recipe of one ``--out`` folder."""

    out: Path
    lambdas: list[float]
    gan_seeds: list[int]
    fc_seeds: list[int]
    data: dict
    damsm_set: list[str]
    gan_set: list[str]
    eval_set: list[str]
    eval_samples: int
    gpu: int
    worker: int = 0  # a --jobs worker's number (1..N) for its progress lines; 0: no workers

    @property
    def worker_tag(self) -> str:
        return f" w{self.worker}" if self.worker else ""

    def finished(self, run: Run) -> bool:
        return (self.folder(run) / "done.json").is_file()

    def ready(self, run: Run) -> bool:
        """AttnGAN runs need the shared DAMSM's text encoder."""
        return run.kind == "damsm" or self.finished(self.shared_damsm)

    @property
    def shared_damsm(self) -> Run:
        return Run("damsm", self.fc_seeds[0], fc=False)

    def plan(self) -> list[Run]:
        """Seed by seed, so that partial results hold whole rows: the seed's two DAMSM runs,
        then its AttnGAN runs (the first DAMSM is the shared one)."""
        runs: list[Run] = []
        for i in range(max(len(self.fc_seeds), len(self.gan_seeds))):
            if i < len(self.fc_seeds):
                runs += [Run("damsm", self.fc_seeds[i], fc=fc) for fc in (False, True)]
            if i < len(self.gan_seeds):
                runs += [Run("gan", self.gan_seeds[i], lam=lam) for lam in self.lambdas]
        return runs

    @functools.cached_property
    def configs(self) -> dict[str, dict]:
        """The resolved configs of the three commands (recipe overrides applied)."""
        out = {}
        for name, path, sets in (
            ("damsm", DAMSM_CFG, self.damsm_set),
            ("gan", GAN_CFG, self.gan_set),
            ("eval", EVAL_CFG, self.eval_set),
        ):
            cfg = load_config(ROOT / path)
            apply_overrides(cfg, sets)
            out[name] = as_plain(cfg)
        return out

    def recipe(self) -> dict:
        """What must be the same for every run of one folder (the plan's lists may grow)."""
        return {
            "data": self.data,
            "damsm_set": self.damsm_set,
            "gan_set": self.gan_set,
            "eval_set": self.eval_set,
            "eval_samples": self.eval_samples,
            "configs": self.configs,
        }

    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    def folder(self, run: Run) -> Path:
        return self.out / run.name

    def text_encoder(self) -> Path:
        """The shared DAMSM's last text encoder (its image encoder lies beside it)."""
        last = self.configs["damsm"]["TRAIN"]["MAX_EPOCH"] - 1
        return self.folder(self.shared_damsm) / "Model" / f"text_encoder{last}.pth"

    def final_generator(self, run: Run) -> Path:
        return self.folder(run) / "Model" / f"netG_epoch_{self.configs['gan']['TRAIN']['MAX_EPOCH']}.pth"


def resume_args(folder: Path) -> list[str]:
    """``--resume <state>`` when an interrupted run left its training state, else nothing."""
    state = folder / STATE
    return ["--resume", str(state)] if state.is_file() else []


def damsm_argv(study: Study, run: Run) -> list[str]:
    folder = study.folder(run)
    return [
        *("--cfg", str(ROOT / DAMSM_CFG), "--gpu", str(study.gpu), "--manualSeed", str(run.seed)),
        *("--data_dir", str(study.data_dir), "--output_dir", str(folder), *resume_args(folder)),
        *("--set", f"DAMSM.TEXT_FC={run.fc}", STATE_EVERY, *study.damsm_set),
    ]


def gan_argv(study: Study, run: Run) -> list[str]:
    folder = study.folder(run)
    return [
        *("--cfg", str(ROOT / GAN_CFG), "--gpu", str(study.gpu), "--manualSeed", str(run.seed)),
        *("--data_dir", str(study.data_dir), "--output_dir", str(folder), *resume_args(folder)),
        *("--set", f"TRAIN.NET_E={study.text_encoder()}", f"TRAIN.SMOOTH.LAMBDA={run.lam}", STATE_EVERY),
        *study.gan_set,
    ]


def eval_argv(study: Study, run: Run) -> list[str]:
    """The same captions and noise for every generator (EVAL.SEED), scored with the shared DAMSM."""
    return [
        *("--cfg", str(ROOT / EVAL_CFG), "--gpu", str(study.gpu), "--data_dir", str(study.data_dir)),
        *("--output_dir", str(study.folder(run) / "eval"), "--num_samples", str(study.eval_samples)),
        *("--set", f"TRAIN.NET_G={study.final_generator(run)}", f"TRAIN.NET_E={study.text_encoder()}"),
        *study.eval_set,
    ]


def machine() -> dict[str, Any]:
    """The CPU model (lscpu), its core count and torch's threads; the GPU with --gpu >= 0."""
    import torch

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    info = {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


@functools.cache
def commit() -> str:
    """The checkout's commit (``+changes`` when its tracked files differ from it) when this
    process first asks: main() asks at its start, so that a run records the code it ran."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT, capture_output=True).returncode
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty else "") if head.returncode == 0 else "unknown"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=1) + "\n").encode())


def validation_history(log_dir: Path) -> dict[int, dict[str, float]]:
    """A DAMSM run's validation numbers per epoch from its TensorBoard scalars ``val/*``
    (a resumed run adds event files: the latest value of each epoch counts)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    history: dict[int, dict[str, float]] = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith("val/"):
            for event in sorted(events.Scalars(tag), key=lambda e: e.wall_time):
                history.setdefault(event.step, {})[tag[4:]] = event.value
    return dict(sorted(history.items()))


def damsm_results(folder: Path) -> dict:
    final = read_json(folder / "Model" / "metrics.json")
    return {"final": final, "epochs": {str(k): v for k, v in validation_history(folder / "Log").items()}}


def gan_results(folder: Path) -> dict:
    m = read_json(folder / "eval" / "metrics.json")["metrics"]
    stage = m["localisation"]["generator_stage2"]
    return {
        "r_precision": m["r_precision"]["mean"],
        "r_precision_std": m["r_precision"]["std"],
        "r_precision_chance": m["r_precision"]["chance"],
        "colour": m["object_match"]["colour"],
        "shape": m["object_match"]["shape"],
        "colour_chance": m["object_match"]["chance_colour"],
        "shape_chance": m["object_match"]["chance_shape"],
        "attention": stage["hit_rate"],
        "attention_chance": stage["chance"],
    }


class RunLog:
    """A run's ``log.txt`` for the block: the commands' stdout, stderr (no progress bars
    off a terminal) and log records go there, the console keeps the progress lines."""

    def __init__(self, path: Path):
        self.path = path

    @contextlib.contextmanager
    def open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", buffering=1) as f:
            handler = logging.StreamHandler(f)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(handler)
            try:
                with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                    yield f
            finally:
                logging.getLogger().removeHandler(handler)


class Interrupted(Exception):
    """A training command stopped on a signal after saving its state."""


class Failed(Exception):
    """A command reported an error (its message is in the run's log.txt)."""


def call(log: RunLog, title: str, command, argv: list[str]) -> None:
    with log.open() as f:
        f.write(f"\n$ {title} {shlex.join(argv)}\n")
        status = command(argv)
    if status:
        raise Failed(f"{title} exited with status {status}: see {log.path}")


def execute(study: Study, run: Run) -> str:
    """Train (or continue) and score one run; -> what it did, for the progress line. Raises
    Interrupted when a training command was stopped by a signal (its state saved)."""
    folder = study.folder(run)
    log = RunLog(folder / "log.txt")
    did = []
    if run.kind == "damsm":
        argv = damsm_argv(study, run)
        did.append("continued" if "--resume" in argv else "trained")
        call(log, "attngan-pretrain-damsm", pretrain_damsm_main, argv)
        if not (folder / "Model" / "metrics.json").is_file():
            raise Interrupted(run.label)
        return " ".join(did)
    if not study.final_generator(run).is_file():
        argv = gan_argv(study, run)
        did.append("continued" if "--resume" in argv else "trained")
        call(log, "attngan-train", attngan_main, argv)
        if not study.final_generator(run).is_file():
            raise Interrupted(run.label)
    call(log, "attngan-eval", eval_main, eval_argv(study, run))
    return " and ".join([*did, "scored"])


def summary(run: Run, results: dict) -> str:
    if run.kind == "damsm":
        f = results["final"]
        return (
            f"val word loss {f['w_loss']:.3f}, sentence loss {f['s_loss']:.3f}, top-1 image->text "
            f"{f['top1_image_to_text']:.1%}, word swap shape {f.get('word_swap_shape', float('nan')):.1%}"
        )
    return (
        f"R-precision {results['r_precision']:.1%}, named colour {results['colour']:.1%}, colour and shape "
        f"{results['shape']:.1%}, G attention in the object {results['attention']:.1%}"
    )


def progress_head(study: Study, index: int, total: int, run: Run) -> str:
    return f"[ablation{study.worker_tag}] {index}/{total} {run.label}:"


def report_done(study: Study, run: Run, index: int, total: int) -> None:
    record = read_json(study.folder(run) / "done.json")
    print(
        f"{progress_head(study, index, total, run)} done already ({record['seconds']:.0f} s) - "
        f"{summary(run, record['results'])}",
        flush=True,
    )


def do_run(study: Study, run: Run, index: int, total: int) -> None:
    """One unfinished run and its progress line; its time (over sessions) in timing.json,
    its results with the machine and commit in done.json once finished."""
    folder, head = study.folder(run), progress_head(study, index, total, run)
    done = folder / "done.json"
    print(
        f"{head} {'continuing' if (folder / STATE).is_file() else 'starting'} (log: {folder / 'log.txt'})", flush=True
    )
    timing_path = folder / "timing.json"
    timing = read_json(timing_path) if timing_path.is_file() else {"seconds": 0.0, "sessions": 0}
    began = time.time()
    try:
        did = execute(study, run)
    finally:
        timing = {"seconds": timing["seconds"] + time.time() - began, "sessions": timing["sessions"] + 1}
        write_json(timing_path, timing)
    results = damsm_results(folder) if run.kind == "damsm" else gan_results(folder)
    write_json(
        done,
        {
            "run": run.name,
            "seconds": timing["seconds"],
            "sessions": timing["sessions"],
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "commit": commit(),
            "results": results,
        },
    )
    print(f"{head} {did} in {time.time() - began:.0f} s - {summary(run, results)}", flush=True)


def check_recipe(study: Study, argv: list[str]) -> None:
    """study.json records the recipe and every invocation; another recipe in a folder
    that holds runs is refused (the runs would mix), keys the code has added or dropped aside."""
    path = study.out / "study.json"
    recipe = study.recipe()
    record = read_json(path) if path.is_file() else {"recipe": recipe, "invocations": []}
    old = record["recipe"]
    changed = [
        line
        for name in ("data", "damsm_set", "gan_set", "eval_set", "eval_samples")
        for line in differences({name: old.get(name)}, {name: recipe[name]})
    ]
    for name in ("damsm", "gan", "eval"):
        a, b = old["configs"][name], recipe["configs"][name]
        changed += [f"{name} config {line}" for line in differences(*common_keys(a, b))]
    if changed:
        raise ConfigError(
            f"{path} records a study with another recipe ({'; '.join(changed)}): "
            "give another --out, or the same options as before"
        )
    command = "python scripts/ablation.py " + shlex.join(argv)
    record["invocations"].append({"command": command.strip(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    write_json(path, record)


def record_end(study: Study, seconds: float, status: int) -> None:
    """The wall-clock time and status of this invocation (the last in study.json)."""
    path = study.out / "study.json"
    record = read_json(path)
    record["invocations"][-1].update(seconds=round(seconds, 1), status=status)
    write_json(path, record)


def common_keys(a: dict, b: dict) -> tuple[dict, dict]:
    """Both configs restricted to their shared keys (a key added to the code's defaults
    since the study began is no change of its recipe)."""
    keys = set(a) & set(b)
    pairs = {
        k: common_keys(a[k], b[k]) if isinstance(a[k], dict) and isinstance(b[k], dict) else (a[k], b[k]) for k in keys
    }
    return {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}


def numbers(text: str, kind=float) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "output" / "ablation",
        help="the study's folder: the data, every run, study.json (default output/ablation); "
        "the same --out again continues the study",
    )
    parser.add_argument("--lambdas", default="0,0.1,1,5,10", help="TRAIN.SMOOTH.LAMBDA values (default 0,0.1,1,5,10)")
    parser.add_argument("--gan-seeds", default="0,1", help="AttnGAN seeds for each lambda (default 0,1)")
    parser.add_argument(
        "--fc-seeds",
        default="0,1,2",
        help="DAMSM seeds with and without TEXT_FC (default 0,1,2; the first "
        "seed's DAMSM without FC is the one the AttnGAN runs share)",
    )
    parser.add_argument(
        "--num-images", type=int, default=DEMO_DATA["num_images"], help="images of the generated data (the demo's 3600)"
    )
    parser.add_argument("--eval-samples", type=int, default=2000, help="images attngan-eval scores (default 2000)")
    parser.add_argument(
        "--damsm-set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of cfg/DAMSM/shapes.yml"
    )
    parser.add_argument(
        "--gan-set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of cfg/shapes_attn2.yml"
    )
    parser.add_argument(
        "--eval-set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of cfg/eval_shapes.yml"
    )
    parser.add_argument("--gpu", type=int, default=-1, help="CUDA device; -1 (default) for the CPU")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch's CPU threads (default 0: torch's own choice); 1 on a machine shared with other work, "
        "where threads waiting for each other on busy cores were five times slower",
    )
    parser.add_argument(
        "--page",
        type=Path,
        default=ROOT / "docs" / "ablation.md",
        help="the page to write (default docs/ablation.md); its figures go beside it",
    )
    parser.add_argument("--page-only", action="store_true", help="only write the page from the runs finished so far")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time, each in a worker process on cores/jobs torch threads unless --threads says "
        "(default 1); AttnGAN runs wait for the shared DAMSM",
    )
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # set by --jobs for its workers
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    commit()
    study = Study(
        out=args.out.resolve(),
        lambdas=numbers(args.lambdas),
        gan_seeds=numbers(args.gan_seeds, int),
        fc_seeds=numbers(args.fc_seeds, int),
        data={**DEMO_DATA, "num_images": args.num_images},
        damsm_set=args.damsm_set,
        gan_set=args.gan_set,
        eval_set=args.eval_set,
        eval_samples=args.eval_samples,
        gpu=args.gpu,
        worker=args.worker,
    )
    if not study.fc_seeds:
        return report(ConfigError("--fc-seeds: at least one seed (its DAMSM without FC is the shared one)"))
    logging.getLogger().addHandler(logging.NullHandler())  # the commands' basicConfig adds no console handler
    logging.getLogger().setLevel(logging.INFO)
    runs = study.plan()
    threads, began = torch.get_num_threads(), time.time()
    try:
        if args.page_only:
            status = 0
        elif args.jobs > 1 and not args.worker:
            status = run_workers(study, argv, args.jobs, args.threads or max(1, (os.cpu_count() or 1) // args.jobs))
        else:
            if args.threads:
                torch.set_num_threads(args.threads)
            status = run_all(study, runs, argv)
    except USER_ERRORS as err:  # the folder holds another recipe
        return report(err)
    finally:
        torch.set_num_threads(threads)
    if args.worker:  # the parent writes the page once its workers are done
        return status
    if not args.page_only:
        record_end(study, time.time() - began, status)
    page = write_page(study, runs, args.page.resolve())
    print(f"[ablation] page: {page}", flush=True)
    return status


def prepare(study: Study, argv: list[str]) -> None:
    """The folder, its recipe check and invocation record, and the generated data."""
    study.out.mkdir(parents=True, exist_ok=True)
    check_recipe(study, argv)
    with RunLog(study.out / "data.log").open():
        prepare_data(study.data_dir, study.data)


@contextlib.contextmanager
def claimed(folder: Path):
    """-> True while this process holds the run's lock, False (at once) when another does.
    The lock is the kernel's (flock): it goes with its process however that ends."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def take_one(study: Study, pending: list[tuple[int, Run]], total: int) -> bool:
    """Run the first pending run that is ready and that no other worker holds; -> whether
    there was one."""
    for index, run in pending:
        if not study.ready(run):
            continue
        with claimed(study.folder(run)) as mine:
            if mine and not study.finished(run):  # finished by another worker since the list was made
                do_run(study, run, index, total)
                return True
    return False


def work_through(study: Study, runs: list[Run]) -> None:
    """Every unfinished run in the plan's order, those other workers hold left to them;
    waits while the only runs left are held or wait for the shared DAMSM."""
    pending = []
    for index, run in enumerate(runs, 1):
        if not study.finished(run):
            pending.append((index, run))
        elif study.worker <= 1:  # one worker says what was done before
            report_done(study, run, index, len(runs))
    while pending:
        if not take_one(study, pending, len(runs)):
            time.sleep(POLL_SECONDS)
        pending = [(index, run) for index, run in pending if not study.finished(run)]


def run_all(study: Study, runs: list[Run], argv: list[str]) -> int:
    """Every run not finished yet (see work_through); -> 0 (all finished), 1 (interrupted:
    the same command continues) or 2 (a command failed). A ConfigError when ``--out`` holds
    a study with another recipe."""
    if not study.worker:  # a --jobs worker's parent has prepared the folder
        prepare(study, argv)
    began, status = time.time(), 0
    try:
        work_through(study, runs)
    except Interrupted as stop:
        print(
            f"[ablation{study.worker_tag}] interrupted in {stop}: its state is saved; the same command continues it",
            flush=True,
        )
        status = 1
    except Failed as err:
        print(f"[ablation{study.worker_tag}] failed: {err}", flush=True)
        status = 2
    print(f"[ablation{study.worker_tag}] {time.time() - began:.0f} s this time", flush=True)
    return status


def run_workers(study: Study, argv: list[str], jobs: int, threads: int) -> int:
    """``--jobs``: this script ``jobs`` times as workers sharing the plan, each on ``threads``
    torch threads; a SIGTERM or Ctrl-C here reaches them all (each saves its run's state).
    -> the worst of their statuses (2 failed, 1 interrupted, 0 all finished)."""
    prepare(study, argv)
    script = [sys.executable, str(Path(__file__).resolve()), *argv, "--threads", str(threads)]
    workers = [subprocess.Popen([*script, "--worker", str(k)]) for k in range(1, jobs + 1)]

    def forward(signum, frame):
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        statuses = [worker.wait() for worker in workers]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return max(statuses) if all(0 <= s <= 2 for s in statuses) else 2


if __name__ == "__main__":
    sys.exit(main())
