#!/usr/bin/env bash
# AttnGAN on several machines under SLURM, one torchrun per node, 8 GPUs each; the nodes meet
# through torchrun's c10d rendezvous on the first node. Submit with: sbatch scripts/slurm_train.sh
#SBATCH --job-name=attngan
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@120
# --signal: SLURM sends SIGTERM 2 minutes before the time limit; every process stops at the same
# step and rank 0 writes Model/training_state.pth (resubmit with --resume it).
set -euo pipefail
CFG=${CFG:-cfg/coco_attn2.yml}
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun .venv/bin/torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 8 \
    --rdzv_backend c10d --rdzv_endpoint "$HEAD:29500" --rdzv_id "$SLURM_JOB_ID" \
    code/main.py --cfg "$CFG" --output_dir "output/slurm_$SLURM_JOB_ID" "$@"
