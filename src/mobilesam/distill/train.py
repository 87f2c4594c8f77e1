"""Decoupled distillation: train a student image encoder on teacher embeddings.

The loss is the mean-squared error between the student's and the teacher's
image embeddings (BxCxGxG); the prompt encoder and mask decoder take no part.
Targets come from a :class:`~mobilesam.distill.cache.TeacherEmbeddingStore` or, in
online mode, from running the teacher on each batch.

Library use (the CLI is a thin layer over this)::

    from mobilesam.distill import DistillConfig, Distiller
    result = Distiller(DistillConfig(out="runs/a", cache="cache/"), progress=False).train()

A run folder holds ``run.json`` (config, student config), ``checkpoint.pt``
(resumable state), ``metrics.jsonl`` and, at the end, ``student_encoder.safetensors``.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..build import SamConfig, build_sam
from ..checkpoint import load_state_dict_strict, read_state_dict, save_checkpoint
from ..modeling import Sam
from . import dist as distmod
from .cache import TeacherEmbeddingStore
from .config import DistillConfig
from .data import CachedDataset, ImageDataset, StepBatchSampler, collate, preprocess_batch
from .report import MetricsLog
from .run_state import CHECKPOINT, capture_rng, load_state, restore_rng, save_state
from .sources import ImageSource, open_source, split_holdout
from .students import student_model_config
from .teacher import load_teacher, teacher_embed

STUDENT_FILE = "student_encoder.safetensors"
UNUSED_PREFIXES = ("head.", "norm_head.")


def lr_factor(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """Multiplier of ``lr`` at optimizer step ``step`` (0-based): linear warm-up, cosine decay.

    Warm-up is capped at a tenth of the run; the last step uses ``min_lr``.
    """
    warmup = min(warmup, total // 10)
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup - 1)
    return (min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(t, 1.0)))) / lr


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 (or fp16 without bf16 support) on GPU, fp32 on CPU."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise ValueError(f"--precision {precision} needs a GPU; the CPU trains in fp32")
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and kernels only (not on norms, biases, attention biases)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or "attention_biases" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@dataclass
class TrainResult:
    """What :meth:`Distiller.train` returns (on every rank)."""

    run_dir: Path
    step: int
    total_steps: int
    student: Sam
    final_eval: dict[str, float] | None
    finished: bool


class Distiller:
    """Trains ``student`` (a ``Sam`` whose image encoder is trained) to match a teacher.

    Give either ``cache`` (or ``config.cache``) or an image ``source`` (or
    ``config.images``) plus a ``teacher`` (or ``config.teacher`` /
    ``config.teacher_checkpoint``). ``student`` defaults to the registered
    student ``config.student`` built against the teacher's config.

    ``dataset`` replaces the source for images that are not files: any map-style
    dataset whose items are ``{"image": 3xhxw uint8 tensor resized with
    data.resize_for_model, "target": CxGxG tensor or None, "key": str}``; items
    without a target need ``teacher``.
    """

    def __init__(
        self,
        config: DistillConfig,
        *,
        cache: TeacherEmbeddingStore | None = None,
        source: ImageSource | None = None,
        teacher: Sam | None = None,
        student: Sam | None = None,
        dataset: Any = None,
        env: distmod.DistEnv | None = None,
        progress: bool = True,
    ) -> None:
        if not config.out:
            raise ValueError("DistillConfig.out (the run folder) is required")
        self.config = config
        self.progress = progress
        self._own_env = env is None
        self.env = env or distmod.setup(config.device)
        self.device = self.env.device
        self.precision = resolve_precision(config.precision, self.device)
        self.run_dir = Path(config.out)
        if not config.resume and (self.run_dir / CHECKPOINT).is_file():
            raise FileExistsError(
                f"{self.run_dir} already holds a checkpoint; pass --resume to continue it "
                "or choose another --out"
            )

        if cache is None and config.cache:
            cache = TeacherEmbeddingStore(config.cache, config.images_root)
        self.cache = cache
        self.teacher: Sam | None = None
        if dataset is not None:
            if teacher is None:
                raise ValueError("a dataset needs the teacher (for its config and targets)")
            self.teacher = teacher.to(self.device).eval()
            teacher_config = teacher.config  # type: ignore[assignment]
            self.dataset: Any = dataset
        elif cache is not None:
            teacher_config = cache.teacher_config
            self.dataset = CachedDataset(cache, verify=config.verify_cache)
        else:
            if source is None and not config.images:
                raise ValueError("give a cache (--cache) or images for online mode (--images)")
            if teacher is None and not config.teacher_checkpoint:
                raise ValueError("online mode needs the teacher's weights (--teacher-checkpoint)")
            if source is None:
                source = open_source(config.images)
            if teacher is None:
                teacher = load_teacher(
                    config.teacher, config.teacher_checkpoint, config.image_size, self.device
                )
            self.teacher = teacher.to(self.device).eval()
            teacher_config = teacher.config  # type: ignore[assignment]
            self.dataset = ImageDataset(source, teacher_config.image_size)

        torch.manual_seed(config.seed)
        if student is None:
            self.student_config: SamConfig = student_model_config(config.student, teacher_config)
            student = build_sam(self.student_config)
        else:
            self.student_config = student.config  # type: ignore[assignment]
        self.teacher_config = teacher_config
        self.student = student.to(self.device)
        if self.student.image_size != teacher_config.image_size:
            raise ValueError(
                f"student input size {self.student.image_size} != teacher's "
                f"{teacher_config.image_size}"
            )
        if config.student_init:
            sd = read_state_dict(config.student_init)
            prefix = "image_encoder."
            if any(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
            load_state_dict_strict(self.student.image_encoder, sd)
        for p in self.student.parameters():
            p.requires_grad_(False)
        self.encoder = self.student.image_encoder
        for name, p in self.encoder.named_parameters():
            # TinyViT's ImageNet head is kept for checkpoint compatibility but never used:
            # trainable, it would stall DDP (parameters without gradients).
            p.requires_grad_(not name.startswith(UNUSED_PREFIXES))

        self.train_indices, self.holdout_indices = split_holdout(
            len(self.dataset), config.holdout, config.seed
        )
        world = self.env.world_size
        self.global_batch = config.batch_size * config.grad_accum * world
        self.steps_per_epoch = len(self.train_indices) // self.global_batch
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{len(self.train_indices)} training images are fewer than one global batch "
                f"of {self.global_batch}"
            )
        self.total_steps = (
            config.steps if config.steps > 0 else config.epochs * self.steps_per_epoch
        )

        self.model: nn.Module = self.encoder
        if self.env.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.encoder, device_ids=ids)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.encoder, config.weight_decay), lr=config.lr
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, self.total_steps, config.warmup, config.lr, config.min_lr),
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self._holdout: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._skipped = 0  # unreadable images met by this rank (online mode)

    # ------------------------------------------------------------------ pieces
    def _autocast(self) -> Any:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _targets(self, batch_images: torch.Tensor, cached: torch.Tensor | None) -> torch.Tensor:
        if cached is not None:
            return cached.to(self.device, non_blocking=True).float()
        assert self.teacher is not None
        return teacher_embed(self.teacher, batch_images, self.precision)

    def _load_holdout(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Held-out (resized image, float16 target) pairs, loaded once."""
        if self._holdout is None:
            pairs = []
            for i in self.holdout_indices:
                s = self.dataset[i]
                target = s["target"]
                if target is None:
                    x = preprocess_batch(self.student, [s["image"]])
                    target = self._targets(x, None)[0].to(torch.float16).cpu()
                pairs.append((s["image"], target))
            self._holdout = pairs
        return self._holdout

    @torch.no_grad()
    def evaluate(self, batch_size: int | None = None) -> dict[str, float]:
        """Held-out embedding MSE and mean cosine similarity (student in eval mode, fp32)."""
        pairs = self._load_holdout()
        if not pairs:
            return {}
        was_training = self.encoder.training
        self.encoder.eval()
        se, count, cos = 0.0, 0, 0.0
        bs = batch_size or self.config.batch_size
        for i in range(0, len(pairs), bs):
            chunk = pairs[i : i + bs]
            x = preprocess_batch(self.student, [p[0] for p in chunk])
            target = torch.stack([p[1] for p in chunk]).to(self.device).float()
            pred = self.encoder(x).float()
            se += float(((pred - target) ** 2).sum())
            count += target.numel()
            cos += float(F.cosine_similarity(pred.flatten(1), target.flatten(1)).sum())
        self.encoder.train(was_training)
        return {"mse": se / count, "cosine": cos / len(pairs)}

    def _state(self, step: int, sampler: StepBatchSampler) -> dict[str, Any]:
        return {
            "step": step,
            "total_steps": self.total_steps,
            "world_size": self.env.world_size,
            "encoder": self.encoder.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": distmod.all_gather_object(self.env, capture_rng()),
            "data_position": sampler.position(step) if step < self.total_steps else None,
            "skipped": distmod.all_gather_object(self.env, self._skipped),
            "config": self.config.to_dict(),
        }

    def _resume(self) -> tuple[int, dict[str, Any] | None]:
        """Load the checkpoint if resuming: (completed steps, this rank's RNG state)."""
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            return 0, None
        state = load_state(path)
        saved = state["config"]
        diffs = [
            f"{k}: checkpoint {saved.get(k)!r}, now {getattr(self.config, k)!r}"
            for k in DistillConfig.RESULT_FIELDS
            if saved.get(k) != getattr(self.config, k)
        ]
        if state["world_size"] != self.env.world_size:
            diffs.append(f"processes: checkpoint {state['world_size']}, now {self.env.world_size}")
        if diffs:
            raise ValueError(
                "cannot resume: settings differ from the checkpoint's:\n  " + "\n  ".join(diffs)
            )
        self.encoder.load_state_dict(state["encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self._skipped = int(state.get("skipped", [0] * self.env.world_size)[self.env.rank])
        return int(state["step"]), state["rng"][self.env.rank]

    def _write_run_info(self) -> None:
        info = {
            "config": self.config.to_dict(),
            "student_config": self.student_config.to_json(),
            "teacher_config": self.teacher_config.to_json(),
            "teacher": self.cache.meta["teacher"]
            if self.cache is not None
            else {
                "name": self.teacher_config.name,
                "checkpoint": self.config.teacher_checkpoint,
            },
            "world_size": self.env.world_size,
            "precision": self.precision,
            "train_images": len(self.train_indices),
            "holdout_images": len(self.holdout_indices),
            "global_batch": self.global_batch,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
        }
        (self.run_dir / "run.json").write_text(json.dumps(info, indent=1))

    # -------------------------------------------------------------------- loop
    def _train_step(self, batches: Any, bar: Any) -> tuple[float, float]:
        """One optimizer step over ``grad_accum`` micro-batches: (mean loss over ranks, lr)."""
        cfg, env = self.config, self.env
        loss_sum = 0.0
        for m in range(cfg.grad_accum):
            batch = next(batches)
            for msg in batch.skipped:
                self._skipped += 1
                bar.write(f"distill: skipped {msg}")
            x = preprocess_batch(self.student, batch.images)
            target = self._targets(x, batch.targets)
            last = m == cfg.grad_accum - 1
            # DDP all-reduces gradients only on the last micro-batch of a step
            ctx = self.model.no_sync() if env.distributed and not last else nullcontext()
            with ctx:  # type: ignore[attr-defined]
                with self._autocast():
                    pred = self.model(x)
                loss = F.mse_loss(pred.float(), target)
                self.scaler.scale(loss / cfg.grad_accum).backward()
            loss_sum += float(loss.detach())
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.encoder.parameters(), cfg.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        loss_avg = distmod.mean_across_ranks(env, loss_sum / cfg.grad_accum)
        if not math.isfinite(loss_avg) and self.precision != "fp16":  # fp16: the scaler skips
            raise FloatingPointError(
                f"loss is {loss_avg}; the run diverged. Start again (new --out) with a lower --lr "
                "(or --precision fp32)"
            )
        return loss_avg, lr

    def train(self, stop_after: int | None = None) -> TrainResult:
        """Run (or continue) training; ``stop_after`` ends after that many steps in this call."""
        from tqdm import tqdm

        cfg, env = self.config, self.env
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        distmod.barrier(env)
        start, rng_state = self._resume()
        if start >= self.total_steps and (self.run_dir / STUDENT_FILE).is_file():
            if env.is_main:
                print(f"{self.run_dir}: already finished ({start} steps)")
            if self._own_env:
                distmod.teardown(env)
            return TrainResult(self.run_dir, start, self.total_steps, self.student, None, True)
        log = MetricsLog(self.run_dir / "metrics.jsonl", enabled=env.is_main)
        if env.is_main:
            log.truncate_after(start)
            self._write_run_info()
        if start == 0 and env.is_main and cfg.holdout:
            log.write({"kind": "eval", "step": 0, **self.evaluate()})

        end = self.total_steps if stop_after is None else min(self.total_steps, start + stop_after)
        sampler = StepBatchSampler(
            self.train_indices, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
            world_size=env.world_size, rank=env.rank, seed=cfg.seed, start_step=start,
            total_steps=end,
        )  # fmt: skip
        loader = DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),  # leaves the global RNG alone
        )  # fmt: skip
        bar = tqdm(
            total=self.total_steps, initial=start, unit="step", desc="distill",
            disable=not (self.progress and env.is_main), dynamic_ncols=True,
        )  # fmt: skip
        self.encoder.train()
        batches = iter(loader)
        if rng_state is not None:
            restore_rng(rng_state)
        window_t, window_steps = time.perf_counter(), 0
        step = start
        for step in range(start, end):
            loss_avg, lr = self._train_step(batches, bar)
            done = step + 1
            window_steps += 1
            bar.update(1)
            if done % cfg.log_every == 0 or done == end:
                now = time.perf_counter()
                ips = window_steps * self.global_batch / max(now - window_t, 1e-9)
                window_t, window_steps = now, 0
                total_skipped = distmod.sum_across_ranks(env, self._skipped)
                log.write(
                    {"kind": "train", "step": done, "epoch": done / self.steps_per_epoch,
                     "loss": loss_avg, "lr": lr, "images_per_s": ips,
                     "skipped_images": total_skipped}
                )  # fmt: skip
                bar.set_postfix(loss=f"{loss_avg:.4g}", lr=f"{lr:.2e}", img_s=f"{ips:.1f}")
            if env.is_main and cfg.holdout and cfg.eval_every and done % cfg.eval_every == 0:
                if done != self.total_steps:
                    log.write({"kind": "eval", "step": done, **self.evaluate()})
            if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == end:
                state = self._state(done, sampler)
                if env.is_main:
                    save_state(self.run_dir / CHECKPOINT, state)
                distmod.barrier(env)
        bar.close()
        step = end
        finished = end == self.total_steps
        final = None
        if finished and env.is_main:
            final = self.evaluate() if cfg.holdout else None
            if final:
                log.write({"kind": "eval", "step": end, "final": True, **final})
            save_checkpoint(self.encoder, self.run_dir / STUDENT_FILE, self.student_config)
        distmod.barrier(env)
        if self._own_env and finished:  # train(stop_after=...) may be called again
            distmod.teardown(env)
        return TrainResult(self.run_dir, step, self.total_steps, self.student, final, finished)


def distill(config: DistillConfig, **kwargs: Any) -> TrainResult:
    """Build a :class:`Distiller` and train (see its arguments)."""
    return Distiller(config, **kwargs).train()
