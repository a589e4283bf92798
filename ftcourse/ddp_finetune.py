"""Fine-tune on many processes or GPUs: the script torchrun starts (`python -m ftcourse.ddp_finetune`).

One process (a quick check, or a notebook's subprocess):

    python -m ftcourse.ddp_finetune --task far --shots 10 --stages head:20,all:100 --out run.json

Two CPU processes (gloo), one machine:

    torchrun --standalone --nproc_per_node=2 -m ftcourse.ddp_finetune --task far --shots 10 --out run.json

One node with 8 GPUs (nccl), then two such nodes (run the same line on each; the rendezvous endpoint is one of
them, `--node_rank` not needed with c10d rendezvous):

    torchrun --standalone --nproc_per_node=8 -m ftcourse.ddp_finetune --folder my_images --out run.json
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --rdzv_id=ft1 \\
        -m ftcourse.ddp_finetune --folder my_images --checkpoint ckpt.pt --out run.json

Nothing in the code changes between them: torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous;
without torchrun the script runs as one process with no process group. What it does, in order:
- reads the task (the course's digits / near / far, or an image folder through `folder_task`) and loads the
  pretrained backbone with a new head, the same on every rank (seeded; DDP also broadcasts rank 0's weights);
- for each stage "K:STEPS" of `--stages` (fastai's freeze_to(K), then STEPS steps; "head:20,all:100" = the
  head alone for 20 steps, then everything): freezes with the course's helpers, builds per-group rates
  (slice(lr/10, lr) from the first group to the head; frozen groups are left out), converts BN to SyncBatchNorm
  keeping the frozen layers' pins (`--sync-bn`; nccl only: SyncBatchNorm does not run on CPU tensors), and wraps
  the model in DDP *after* the frozen set is final (a new wrap at every stage: DDP fixes the parameters it
  all-reduces when it wraps);
- trains with a DistributedSampler: each step's global batch (`--batch-size`, split evenly over the ranks) is
  the same set of images whatever the number of processes, so 2 processes and 1 train on the same batches;
- checkpoints from rank 0 every `--checkpoint-every` steps and at each stage's end, atomically (a kill during
  the save leaves the previous checkpoint; on several machines put it on storage they share: every rank reads
  it, and a checkpoint some ranks cannot see stops the run), tensors only (weights_only=True); `--resume`
  continues from it with the same weights, optimizer state and data order as a run that was never stopped;
- evaluates the validation and test splits on rank 0 and writes `--out` (JSON, atomically): accuracies, steps,
  world size, backend, seconds per step; `--save` keeps the fine-tuned weights (ftcourse.save_checkpoint).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from .bn import convert_sync_batchnorm
from .data import far_task, folder_task, near_task, target_task
from .files import atomic_path, atomic_write_text
from .groups import freeze_to
from .models import load_pretrained, replace_head, save_checkpoint
from .optim import lrs_for, param_groups
from .runtime import seed_everything
from .train import evaluate

__all__ = ["TASKS", "parse_stages", "save_state", "run", "main"]

TASKS = {"digits": target_task, "near": near_task, "far": far_task}


def parse_stages(text: str) -> list[tuple[int, int]]:
    """'head:20,all:100' -> [(-1, 20), (0, 100)]: freeze_to(K) then STEPS steps, stage by stage.

    K is freeze_to's argument: "head" (-1: the head alone), "all" (0: everything) or a group index (2: groups
    2 onward train)."""
    names = {"head": -1, "all": 0}
    stages = []
    for part in text.split(","):
        k, sep, steps = part.strip().partition(":")
        try:
            stage = (names[k] if k in names else int(k), int(steps))
        except ValueError:
            stage = None
        if not sep or stage is None or stage[1] < 1:
            raise ValueError(f"--stages wants FREEZE_TO:STEPS pairs separated by commas, e.g. head:20,all:100 (the "
                             f"head alone for 20 steps, then everything for 100); got {text!r}")
        stages.append(stage)
    return stages


def _args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m ftcourse.ddp_finetune", description=__doc__.split("\n")[0])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--task", choices=sorted(TASKS), default="far", help="one of the course's tasks")
    where.add_argument("--folder", type=Path, help="an image folder, one sub-folder per class (folder_task)")
    ap.add_argument("--shots", type=int, default=10, help="training images per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stages", type=parse_stages, default=parse_stages("head:20,all:100"),
                    help="FREEZE_TO:STEPS,...: e.g. head:20,all:100 (head alone, then everything)")
    ap.add_argument("--lr", type=float, default=0.01, help="the last group's rate; earlier groups down to lr/10")
    ap.add_argument("--batch-size", type=int, default=32, help="the global batch, split evenly over the processes")
    ap.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (nccl only)")
    ap.add_argument("--checkpoint", type=Path, help="where rank 0 saves the training state")
    ap.add_argument("--checkpoint-every", type=int, default=20, help="steps between checkpoints")
    ap.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    ap.add_argument("--out", type=Path, help="the result, as JSON (rank 0)")
    ap.add_argument("--save", type=Path, help="the fine-tuned weights (rank 0; load with ftcourse.load_checkpoint)")
    ap.add_argument("--crash-after-step", type=int, default=None, help=argparse.SUPPRESS)  # tests: a kill
    args = ap.parse_args(argv)
    if args.resume and args.checkpoint is None:
        ap.error("--resume needs --checkpoint PATH")
    return args


def _setup() -> tuple[int, int, torch.device, str]:
    """(rank, world size, device, backend): from torchrun's environment, or one process without a group."""
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() and os.environ.get("FTCOURSE_DEVICE") == "cuda"
                                  else "cpu"), "none"
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device, backend


def _task(args):
    if args.folder is not None:
        return folder_task(args.folder, shots=args.shots, seed=args.seed)
    return TASKS[args.task](shots=args.shots, seed=args.seed)


def _loader(task, args, rank: int, world: int, epoch: int) -> DataLoader:
    """This rank's share of every global batch of `epoch`: the same images whatever `world` is."""
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} does not split over {world} processes: use a multiple")
    data = TensorDataset(task.x_train, task.y_train)
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True)
    sampler.set_epoch(epoch)
    return DataLoader(data, batch_size=args.batch_size // world, sampler=sampler, drop_last=True)


def _steps_per_epoch(task, args) -> int:
    n = len(task.y_train)
    if n < args.batch_size:
        raise SystemExit(f"{n} training images are fewer than one global batch ({args.batch_size}): "
                         "lower --batch-size or raise --shots")
    return n // args.batch_size


def _batches(task, args, rank: int, world: int, start: int):
    """(global step, x, y) from step `start` on, forever: epochs in order, the ones already done skipped."""
    per_epoch = _steps_per_epoch(task, args)
    epoch, skip = divmod(start, per_epoch)
    step = start
    while True:
        for i, (x, y) in enumerate(_loader(task, args, rank, world, epoch)):
            if i < skip:
                continue
            yield step, x, y
            step += 1
        epoch, skip = epoch + 1, 0


def _stage_model(model: nn.Module, k: int, args, backend: str, device: torch.device):
    """Freeze to `k`, per-group rates, SyncBN if asked (and possible), then DDP around the final frozen set."""
    groups = freeze_to(model, k)
    rates = lrs_for(slice(args.lr / 10, args.lr), len(groups))  # input to output; frozen groups are left out
    opt = torch.optim.SGD(param_groups(groups, rates), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    if args.sync_bn and backend == "nccl":
        model = convert_sync_batchnorm(model)
    wrapped = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if backend != "none" else model
    return model, wrapped, opt


def save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, stage: int) -> None:
    """The training state (weights, optimizer, step, stage), tensors and numbers only, written atomically."""
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "stage": stage}, tmp)


def _checkpoint_everywhere(path: Path, backend: str, device: torch.device) -> bool:
    """Whether the checkpoint exists, agreed by every rank: rank 0 writes it, every rank reads it, so on several
    machines it must be on storage they share; a checkpoint some ranks see and others do not is an error (they
    would resume at different steps and hang), not a silent restart."""
    seen = path.exists()
    if backend == "none":
        return seen
    flags = torch.tensor([int(seen), int(seen)], device=device)
    low, high = flags.clone(), flags.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if int(low[0]) != int(high[0]):
        raise SystemExit(f"--resume: {path} exists on some ranks and not on others: put --checkpoint on storage "
                         "every machine shares (rank 0 writes it, every rank reads it)")
    return bool(low[0])


def run(args) -> dict:
    """Fine-tune as the command line says (`args`: the parsed namespace, or the arguments as a list of strings);
    the result dict (accuracies on rank 0 only). Without torchrun's environment: one process, in this one."""
    if not isinstance(args, argparse.Namespace):
        args = _args(list(args))
    rank, world, device, backend = _setup()
    try:
        return _run(args, rank, world, device, backend)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _run(args, rank, world, device, backend) -> dict:
    seed_everything(args.seed)
    task = _task(args)
    model = load_pretrained()
    replace_head(model, task.num_classes, seed=args.seed)
    model.to(device)
    state, start = None, 0
    if args.resume and _checkpoint_everywhere(args.checkpoint, backend, device):
        state = torch.load(args.checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        start = int(state["step"])
    if args.sync_bn and backend != "nccl" and rank == 0:
        print("--sync-bn: SyncBatchNorm runs on GPUs (nccl) only; on the CPU each process keeps its own BN "
              "statistics", file=sys.stderr)
    total = sum(steps for _, steps in args.stages)
    batches = _batches(task, args, rank, world, start)
    seconds, done, end = 0.0, start, 0
    for stage, (k, steps) in enumerate(args.stages):
        end += steps
        if done >= end:
            continue  # finished before a resume
        model, wrapped, opt = _stage_model(model, k, args, backend, device)
        if state is not None and state.get("stage") == stage and "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
        model.train()
        t0 = time.perf_counter()
        while done < end:
            step, x, y = next(batches)
            loss = nn.functional.cross_entropy(wrapped(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done = step + 1
            if args.checkpoint is not None and (done % args.checkpoint_every == 0 or done == end):
                if rank == 0:
                    save_state(args.checkpoint, model, opt, done, stage if done < end else stage + 1)
                if backend != "none":
                    dist.barrier()  # nobody runs ahead of a checkpoint that may be needed
            if args.crash_after_step is not None and done == args.crash_after_step and rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)  # a crash, as a test wants one: no clean-up at all
        seconds += time.perf_counter() - t0
        state = None
    result = {"world size": world, "backend": backend, "steps": total, "resumed from step": start,
              "seconds per step": seconds / max(1, total - start), "stages": [list(s) for s in args.stages]}
    if rank == 0:
        result["val accuracy"] = evaluate(model, (task.x_val, task.y_val), device=device)
        result["test accuracy"] = evaluate(model, (task.x_test, task.y_test), device=device)
        if args.save is not None:
            save_checkpoint(model.state_dict(), args.save)
        if args.out is not None:
            atomic_write_text(args.out, json.dumps(result, indent=1))
    if backend != "none":
        dist.barrier()
    return result


def main(argv=None) -> int:
    result = run(_args(argv))
    if "test accuracy" in result:  # rank 0
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
