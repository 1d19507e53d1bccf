"""scripts/ablation.py end to end on a tiny recipe (a few steps, one seed per cell): the page
with its tables and figures, a second call that redoes nothing, an interrupted run that
continues from its training state, and a folder that refuses another recipe."""

import importlib.util
import json
import os
import sys

import pytest

from conftest import ROOT

if os.environ.get("CI") != "true":
    pytest.importorskip("matplotlib", reason="the ablation extra (pip install -e '.[ablation]') draws the figures")

ARCH = ["DAMSM.COMPACT_IMAGE_SIZE=32", "TEXT.EMBEDDING_DIM=16"]
G = ["GAN.GF_DIM=4", "GAN.DF_DIM=4", "GAN.Z_DIM=8", "GAN.CONDITION_DIM=4"]


def load_script():
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "scripts" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablation"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ablation():
    return load_script()


def tiny_argv(out, page):
    return [
        *("--out", str(out), "--page", str(page), "--num-images", "18", "--eval-samples", "10", "--threads", "1"),
        *("--lambdas", "0,5", "--gan-seeds", "0", "--fc-seeds", "0"),
        *("--damsm-set", "TRAIN.MAX_EPOCH=2", "TRAIN.BATCH_SIZE=3", "TREE.BASE_SIZE=32", *ARCH),
        *("--gan-set", "TRAIN.MAX_EPOCH=1", "TRAIN.BATCH_SIZE=3", *ARCH, *G),
        *("--eval-set", "EVAL.BATCH_SIZE=5", *ARCH, *G),
    ]


def files_of(folder):
    """{path: (size, mtime)} of every file of the study's runs and data."""
    return {
        p: (p.stat().st_size, p.stat().st_mtime_ns)
        for sub in ("damsm", "gan", "data")
        for p in (folder / sub).rglob("*")
        if p.is_file()
    }


def lambda_rows(text):
    section = text.split("## 1.", 1)[1].split("## 2.", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| 0 |") or line.startswith("| 5 |")]


def test_the_study_runs_pages_resumes_and_redoes_nothing(ablation, tmp_path, capsys):
    out, page = tmp_path / "runs", tmp_path / "docs" / "ablation.md"
    argv = tiny_argv(out, page)

    # Before any run: the page, every cell marked not yet run.
    assert ablation.main([*argv, "--page-only"]) == 0
    text = page.read_text()
    assert "**0 of 4 runs finished**" in text
    assert all("not yet run" in row for row in lambda_rows(text))

    assert ablation.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("[ablation] ") >= 4 and "done already" not in printed
    text = page.read_text()
    assert "**4 of 4 runs finished**" in text
    rows = lambda_rows(text)
    assert len(rows) == 2 and not any("not yet run" in row for row in rows)
    assert "| 5 |" in rows[1] and "58.65 %" in rows[1]  # the paper's number beside ours
    assert "| validation word loss |" in text and "| 1 |" in text  # the last epoch and the per-epoch table
    assert "Intel" in text or "cores" in text  # the machine
    for figure in ("ablation_lambda.png", "ablation_fc.png"):
        assert (page.parent / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = json.loads((out / "gan" / "lambda5_seed0" / "done.json").read_text())
    assert 0 <= done["results"]["r_precision"] <= 1 and done["seconds"] > 0

    # A hand-written reading survives the page's rewrite; a second call redoes nothing.
    page.write_text(text.replace("Not written yet", "Our reading"))
    before = files_of(out)
    assert ablation.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("done already") == 4
    assert files_of(out) == before
    assert "Our reading" in page.read_text()

    # A run interrupted after its last step (its state saved, no final G): continued with
    # --resume from that state, then scored; the others stay untouched.
    run = out / "gan" / "lambda0_seed0"
    for path in (run / "done.json", run / "Model" / "netG_epoch_1.pth", run / "eval" / "metrics.json"):
        path.unlink()
    assert ablation.main(argv) == 0
    printed = capsys.readouterr().out
    assert "AttnGAN lambda 0, seed 0: continued and scored" in printed
    assert printed.count("done already") == 3
    assert "--resume" in (run / "log.txt").read_text()
    assert (run / "done.json").is_file()


def test_a_run_with_a_saved_state_resumes_from_it(ablation, tmp_path):
    study = ablation.Study(tmp_path, [1.0], [0], [0], {}, [], [], [], 10, -1)
    run = ablation.Run("gan", 0, lam=1.0)
    assert "--resume" not in ablation.gan_argv(study, run)
    state = study.folder(run) / "Model" / "training_state.pth"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"")
    argv = ablation.gan_argv(study, run)
    assert argv[argv.index("--resume") + 1] == str(state)
    damsm = ablation.Run("damsm", 0, fc=True)
    assert "--resume" not in ablation.damsm_argv(study, damsm) and "DAMSM.TEXT_FC=True" in ablation.damsm_argv(
        study, damsm
    )


def test_a_folder_refuses_another_recipe(ablation, tmp_path, capsys):
    out = tmp_path / "runs"
    study = ablation.Study(out, [1.0], [0], [0], {"num_images": 48}, ["TRAIN.MAX_EPOCH=2"], [], [], 10, -1)
    out.mkdir()
    ablation.check_recipe(study, [])
    other = ablation.Study(out, [1.0, 5.0], [0, 1], [0], {"num_images": 48}, ["TRAIN.MAX_EPOCH=3"], [], [], 10, -1)
    with pytest.raises(ablation.ConfigError, match=r"damsm config TRAIN.MAX_EPOCH: 2 -> 3"):
        ablation.check_recipe(other, [])
    more_seeds = ablation.Study(
        out, [1.0, 5.0], [0, 1], [0, 1], {"num_images": 48}, ["TRAIN.MAX_EPOCH=2"], [], [], 10, -1
    )
    ablation.check_recipe(more_seeds, [])  # more cells, the same recipe
    assert len(json.loads((out / "study.json").read_text())["invocations"]) == 2


def test_a_worker_leaves_held_runs_to_others_and_gan_runs_wait_for_the_shared_damsm(ablation, tmp_path, monkeypatch):
    study = ablation.Study(tmp_path, [0.0, 5.0], [0], [0], {}, [], [], [], 10, -1, worker=1)
    runs = study.plan()  # DAMSM without FC (the shared one), with FC, then AttnGAN at lambda 0 and 5
    pending = list(enumerate(runs, 1))
    taken = []
    monkeypatch.setattr(ablation, "do_run", lambda study, run, index, total: taken.append(run.name))

    with ablation.claimed(study.folder(runs[0])) as mine:  # another worker trains the shared DAMSM
        assert mine
        assert ablation.take_one(study, pending, len(runs))
        assert taken == ["damsm/fc1_seed0"]
        # Only AttnGAN runs left: none is ready while the shared DAMSM is unfinished.
        assert not ablation.take_one(study, pending[2:], len(runs))
    (study.folder(runs[0]) / "done.json").write_text("{}")
    assert ablation.take_one(study, pending[2:], len(runs))
    assert taken == ["damsm/fc1_seed0", "gan/lambda0_seed0"]


def test_two_workers_share_the_plan_and_do_every_run_once(ablation, tmp_path, capfd):
    out, page = tmp_path / "runs", tmp_path / "docs" / "ablation.md"
    assert ablation.main([*tiny_argv(out, page), "--jobs", "2"]) == 0
    printed = capfd.readouterr().out
    text = page.read_text()
    assert "**4 of 4 runs finished**" in text and "wall-clock" in text
    assert json.loads((out / "study.json").read_text())["invocations"][-1]["status"] == 0
    assert "[ablation w1]" in printed and "[ablation w2]" in printed
    for name, command in (
        ("damsm/fc0_seed0", "attngan-pretrain-damsm"),
        ("damsm/fc1_seed0", "attngan-pretrain-damsm"),
        ("gan/lambda0_seed0", "attngan-train"),
        ("gan/lambda5_seed0", "attngan-train"),
    ):
        log = (out / name / "log.txt").read_text()
        assert log.count(f"$ {command} ") == 1, name  # trained by one worker only
        assert json.loads((out / name / "done.json").read_text())["machine"]["torch_threads"] == 1


def test_a_study_of_the_fc_layer_alone_says_so_instead_of_an_empty_lambda_table(ablation, tmp_path):
    page = tmp_path / "docs" / "fc.md"
    argv = ["--out", str(tmp_path / "runs"), "--page", str(page), "--lambdas", "", "--gan-seeds", "", "--page-only"]
    assert ablation.main(argv) == 0
    text = page.read_text()
    assert "**0 of 6 runs finished**" in text  # three seeds, with and without TEXT_FC
    assert "Not part of this study: it has no AttnGAN runs" in text and "| λ |" not in text
    assert "No AttnGAN runs" in text and "attngan-eval" not in text
    assert not (page.parent / "fc_lambda.png").exists() and (page.parent / "fc_fc.png").is_file()


def test_object_match_is_compared_with_each_generators_own_chance(ablation):
    """Hand-computed: colour 90 % against its chance 70 % and 80 % against 40 % stand 20 and
    40 points above chance, +30.0 ± 14.1 over the two seeds, although the raw shares fall."""
    import ablation_page

    study = ablation.Study(ROOT, [5.0], [0, 1], [0], {}, [], [], [], 10, -1)

    def record(colour, chance):
        results = dict(r_precision=0.5, r_precision_std=0.0, r_precision_chance=0.01, colour=colour)
        results.update(colour_chance=chance, shape=0.1, shape_chance=0.1, attention=0.3, attention_chance=0.25)
        return {"results": results}

    done = {ablation.Run("gan", 0, lam=5.0): record(0.9, 0.7), ablation.Run("gan", 1, lam=5.0): record(0.8, 0.4)}
    row = ablation_page.lambda_table(study, done)[2]
    assert "| 85.0 ± 7.1 % (n=2) | 55.0 ± 21.2 % (n=2) | +30.0 ± 14.1 pts (n=2) |" in row
    assert row.endswith("| +5.0 ± 0.0 pts (n=2) |")  # attention 30 % against 25 %
