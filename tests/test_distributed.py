"""Data parallelism with gloo on the CPU: two processes compute what one computes on the
same global batch (the gathered DAMSM losses and their gradients, AttnGAN steps where
BatchNorm is not involved, the evaluation), and torchrun runs of both commands: a SIGTERM
to the whole group saves one state that resumes on another world size, and two "nodes" on
one machine meet through torchrun's c10d rendezvous."""

import json
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
import yaml

import dist_workers as workers
from attngan import distributed
from attngan.config import ConfigError
from attngan.losses import damsm_losses
from attngan.runtime import run_dir, seed_everything
from attngan.training.gan import GanTrainer
from conftest import ROOT, terminated_after_first_state

WORLD = 2


def spawn(fn, *args) -> None:
    mp.spawn(fn, args=(WORLD, workers.free_port(), *args), nprocs=WORLD, join=True)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def test_gathered_damsm_losses_and_gradients_equal_one_process(tmp_path):
    spawn(workers.damsm_loss_worker, str(tmp_path))
    regions, cnn, words_emb, sent, cap_lens, class_ids = workers.damsm_batch()
    leaves = [t.clone().requires_grad_() for t in (regions, cnn, words_emb, sent)]
    losses, _, scores = damsm_losses(*leaves, cap_lens, class_ids, 4.0, 5.0, 10.0)
    sum(losses.values()).backward()
    n = regions.size(0) // WORLD
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for k, v in losses.items():  # every process has the global batch's loss
            assert relative(got["losses"][k], v.detach()) < 1e-5, k
        assert relative(got["scores"], scores) < 1e-5
        rows = slice(rank * n, (rank + 1) * n)
        for grad, leaf in zip(got["grads"], leaves):
            # x world size: DDP's average over the processes then gives the global gradient
            expected = leaf.grad[rows][..., : grad.size(-1)] * WORLD if grad.dim() == 3 else leaf.grad[rows] * WORLD
            assert relative(grad, expected) < 1e-5


def test_two_processes_train_like_one_where_batchnorm_is_not_involved(tiny_gan, tmp_path, monkeypatch):
    """A 2-process step equals a 1-process step on the same global batch: the batch split
    in length order, the noise of the global batch, the DAMSM losses and the Ds'
    mismatched pairs global. BatchNorm is the exception on the CPU (no SyncBatchNorm), so
    both normalise with running statistics here."""
    cfg = tiny_gan.cfg()
    cfg.RUN.IMAGE_INTERVAL = 2
    # The original's attention mask applies other captions' masks by batch position
    # (docs/fidelity.md#word-attention-of-the-generator, FIXES.ATTENTION_MASK), so with it
    # G's attention depends on how the batch is split.
    cfg.FIXES.ATTENTION_MASK = True
    steps = 4  # over an epoch end (3 global batches of 4 an epoch)
    spawn(workers.gan_worker, json.loads(json.dumps(cfg)), str(run_dir(cfg, str(tmp_path / "two"))), steps)
    ranks = [torch.load(tmp_path / "two" / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for key in ("G", "avg_G", "Ds"):  # every process holds the same weights after every step
        for when in ("first", "last"):
            assert all(torch.equal(a, b) for a, b in zip(ranks[0][when][key], ranks[1][when][key])), (when, key)

    monkeypatch.setattr(torch.nn.modules.batchnorm._BatchNorm, "forward", torch.nn.modules.batchnorm._BatchNorm.forward)
    workers.without_batch_statistics()
    seed_everything(7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    trainer = GanTrainer(cfg, torch.device("cpu"), run_dir(cfg, str(tmp_path / "one")), 7)
    trainer.train(stop_after_steps=1)
    one = workers.trained_weights(trainer)
    torch.set_num_threads(threads)
    # Measured: D gradients 3e-6, G's 1.8e-5 (through the Ds' first update), the Ds after
    # one Adam step 2.4e-7; G after its step 3.1e-4 (Adam normalises tiny gradients whose
    # last bits differ: the summation order of a split batch) — float32 rounding.
    tolerances = {"Ds grad": 1e-4, "G grad": 1e-4, "Ds": 1e-5, "G": 2e-3, "avg_G": 2e-3}
    for key, tolerance in tolerances.items():
        worst = max(relative(a, b) for a, b in zip(ranks[0]["first"][key], one[key]))
        assert worst < tolerance, (key, worst)
    state = torch.load(tmp_path / "two" / "Model" / "training_state.pth", weights_only=True)
    assert (state["epoch"], state["step"], state["gen_iterations"]) == (1, 1, steps)
    assert (tmp_path / "two" / "Image" / "G_average_2_g0.png").is_file()
    assert not any((tmp_path / "two").glob("rank1*.png"))


def test_evaluation_under_two_processes_equals_one(tiny_gan, tmp_path):
    cfg = tiny_gan.cfg()
    cfg.EVAL.SPLITS = 2
    spawn(workers.eval_worker, json.loads(json.dumps(cfg)), str(tmp_path / "two"))
    one = workers.evaluate_random_generator(cfg, tmp_path / "one")
    for rank in range(WORLD):
        two = torch.load(tmp_path / "two" / f"summary{rank}.pt", weights_only=False)
        assert two["metrics"] == one["metrics"]
    assert (tmp_path / "two" / "report.md").is_file() and (tmp_path / "two" / "samples.png").is_file()


def test_batch_that_does_not_divide_names_both_numbers():
    world = distributed.World(0, 3, 0)
    with pytest.raises(ConfigError, match=r"TRAIN.BATCH_SIZE 16 .* 3 processes"):
        distributed.local_batch(16, world)
    assert distributed.local_batch(16, world, per_process=True) == (16, 48)
    assert distributed.local_batch(48, world) == (16, 48)


# ---- torchrun ------------------------------------------------------------------------


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def write_cfg(cfg, path) -> str:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg))))
    return str(path)


def test_sigterm_to_the_torchrun_group_saves_one_state_that_resumes_on_one_process(tiny_gan, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_gan.cfg()
    cfg.TRAIN.MAX_EPOCH, cfg.RUN.IMAGE_INTERVAL = 100000, 100000
    cfg_file = write_cfg(cfg, tmp_path / "tiny.yml")
    command = torchrun(
        "--nproc_per_node",
        str(WORLD),
        "--master_port",
        str(workers.free_port()),
        str(ROOT / "code" / "main.py"),
        "--cfg",
        cfg_file,
        "--gpu",
        "-1",
        "--output_dir",
        str(out),
    )
    state = out / "Model" / "training_state.pth"
    _, err = terminated_after_first_state(command, state, timeout=90)
    assert err.count("stopped at epoch") == 1, err  # rank 0 alone saves and says so
    saved = torch.load(state, map_location="cpu", weights_only=False)
    assert saved["epoch"] * 3 + saved["step"] == saved["gen_iterations"] > 3
    assert sorted(p.name for p in (out / "Model").iterdir() if p.suffix == ".pth")[-1] == "training_state.pth"

    cfg.TRAIN.MAX_EPOCH = saved["epoch"] + 1  # one process goes on with the same recipe to the next epoch end
    resumed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "code" / "main.py"),
            "--cfg",
            write_cfg(cfg, tmp_path / "b.yml"),
            "--gpu",
            "-1",
            "--resume",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"epoch {saved['epoch']}, step {saved['step']}" in resumed.stderr
    assert (out / "Model" / f"netG_epoch_{saved['epoch'] + 1}.pth").is_file()


def test_two_nodes_on_one_machine_pretrain_damsm(tmp_path):
    from attngan.data.synthetic import make_shapes_dataset

    data = tmp_path / "shapes"
    make_shapes_dataset(data, num_images=30, image_size=32, seed=5)  # 25 train, 5 test images
    out = tmp_path / "damsm"
    endpoint = f"127.0.0.1:{workers.free_port()}"
    overrides = [
        f"DATA_DIR={data}",
        "WORKERS=0",
        "TRAIN.BATCH_SIZE=4",
        "TRAIN.MAX_EPOCH=1",
        "TREE.BASE_SIZE=32",
        "TEXT.EMBEDDING_DIM=16",
        "DAMSM.VAL_BATCHES=1",
    ]
    nodes = [
        subprocess.Popen(
            torchrun(
                "--nnodes",
                "2",
                "--nproc_per_node",
                "1",
                "--node_rank",
                str(node),
                "--rdzv_backend",
                "c10d",
                "--rdzv_endpoint",
                endpoint,
                "--rdzv_id",
                "two-nodes",
                str(ROOT / "code" / "pretrain_DAMSM.py"),
                "--cfg",
                str(ROOT / "cfg" / "DAMSM" / "shapes.yml"),
                "--gpu",
                "-1",
                "--output_dir",
                str(out),
                "--manualSeed",
                "1",
                "--set",
                *overrides,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in range(2)
    ]
    results = [node.communicate(timeout=240) for node in nodes]
    assert all(node.returncode == 0 for node in nodes), [err[-2000:] for _, err in results]
    printed = [json.loads(o.strip().splitlines()[-1]) for o, _ in results if o.strip()]
    assert len(printed) == 1 and printed[0]["output_dir"] == str(out)  # rank 0 alone reports and writes
    assert json.loads((out / "Model" / "metrics.json").read_text())["chance"] == 0.25  # the global batch of 4
    assert (out / "Model" / "text_encoder0.pth").is_file()
