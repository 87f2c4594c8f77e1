"""Training a SAM on shapes scenes with SAM's interactive recipe (see :class:`SamTrainConfig`).

The loop around :func:`.step.step_loss`. Used for the teacher (everything trained from
scratch) and for the coupled student baselines (a student encoder trained end to end
through the mask losses, with the decoder trained jointly or frozen). Decoupled
distillation lives in :mod:`mobilesam.distill`; this module is only the end-to-end
mask-loss trainer.

A run folder holds ``config.json``, ``metrics.jsonl`` (``kind`` ``train``: loss parts,
lr, scenes/s; ``eval``: held-out single-point mIoU against ground truth),
``model.safetensors`` (rewritten at each evaluation and at the end), ``checkpoint.pt``
(everything a resumed run needs, written atomically every ``checkpoint_every`` steps) and
``curves.png``.

Runs resume exactly: a step's scenes and prompts are a function of (seed, step) and the
checkpoint holds the model, optimizer, schedule and generator states, so a run stopped
(killed, or ``budget_seconds`` spent) and resumed ends with the same weights as one that
never stopped. That is what lets a long CPU training go on across sittings.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_state_dict_strict, read_state_dict, save_checkpoint
from ..config import SamConfig
from ..data.shapes import SPLITS, Scene, ShapesConfig, render_scene
from ..distill.run_state import capture_rng, load_state, restore_rng, save_state
from ..inference.transforms import ResizeLongestSide
from ..modeling import Sam
from ..modeling.image_encoder import resize_position_tables
from .config import SamTrainConfig
from .step import decode, scenes_to_batch, step_loss

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
# Scenes the in-training evaluation uses: a slice of the held-out range far from the
# seeds the final evaluation starts at, so monitoring never tunes on the reported numbers.
MONITOR_OFFSET = 500_000


@dataclass
class TrainSummary:
    run_dir: Path
    steps: int
    seconds: float
    train_seconds: float
    final_miou: float
    finished: bool = True
    cpu_seconds: float = 0.0  # training's CPU time (all threads, evaluations excluded)


@torch.no_grad()
def point_miou(model: Sam, scenes: list[Scene], batch: int = 8) -> float:
    """Mean IoU against ground truth, one centre point per object (best predicted IoU of 3)."""
    from ..evaluation.prompts import center_point

    was = model.training
    model.eval()
    ious = []
    s = model.image_size
    for i in range(0, len(scenes), batch):
        chunk = scenes[i : i + batch]
        emb = model.image_encoder(scenes_to_batch(model, chunk))
        for e, sc in zip(emb, chunk):
            if len(sc) == 0:
                continue
            pts = torch.tensor(np.stack([center_point(m) for m in sc.masks]), dtype=torch.float32)
            pts = pts[:, None].to(emb.device)
            lab = torch.ones(len(sc), 1, device=emb.device)
            low, iou = decode(
                model, e[None].expand(len(sc), -1, -1, -1), (pts, lab), None, None, True
            )
            best = iou.argmax(1)
            logits = low[torch.arange(len(sc)), best][:, None]
            pred = F.interpolate(logits, (s, s), mode="bilinear", align_corners=False)[:, 0] > 0
            gt = torch.from_numpy(sc.masks).to(pred.device)
            inter = (pred & gt).flatten(1).sum(1).float()
            union = (pred | gt).flatten(1).sum(1).float().clamp(min=1)
            ious.extend((inter / union).tolist())
    model.train(was)
    return float(np.mean(ious)) if ious else float("nan")


# the part each ``trainable`` setting trains, as a dotted path from the model
_PARTS = {"image_encoder": "image_encoder", "mask_decoder": "mask_decoder",
          "iou_head": "mask_decoder.iou_prediction_head"}  # fmt: skip


def _trainable_parameters(model: Sam, trainable: str) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(trainable == "all")
    if trainable in _PARTS:
        part = model.get_submodule(_PARTS[trainable])
        for p in part.parameters():
            p.requires_grad_(True)
        return part
    return model


def _train_mode(model: Sam, trainable: str) -> None:
    """Training mode for what trains; frozen parts stay in eval mode (so a decoder
    fine-tuning leaves the distilled encoder's BatchNorm statistics as they were)."""
    model.train()
    if trainable != "all":
        for part in model.children():
            part.eval()
        model.get_submodule(_PARTS[trainable]).train()


def _step_seeds(cfg: SamTrainConfig, step: int) -> tuple[np.random.Generator, np.ndarray]:
    """A step's random generator (after drawing its scenes) and its training scene seeds.

    Both are functions of (seed, step) alone, which is what makes resuming exact.
    """
    train_lo, train_hi = SPLITS["train"]
    rng = np.random.default_rng([cfg.seed, step])
    if cfg.train_scenes > 0:
        return rng, rng.choice(cfg.train_scenes, cfg.batch_size, replace=False) + train_lo
    seeds = train_lo + cfg.seed * 100_003 + step * cfg.batch_size + np.arange(cfg.batch_size)
    return rng, (seeds - train_lo) % (train_hi - train_lo) + train_lo


def upscale_scene(scene: Scene, size: int) -> Scene:
    """``scene`` as a model with a larger input sees it: the image resized the way the
    predictor resizes every image (Pillow bilinear), each ground-truth pixel a block of
    ``size // side`` pixels. ``size`` must be a whole multiple of the scene's side."""
    side = scene.image.shape[0]
    if size == side:
        return scene
    if size % side:
        raise ValueError(f"model input {size} is not a whole multiple of the scene size {side}")
    f = size // side
    image = ResizeLongestSide(size).apply_image(scene.image)
    masks = scene.masks.repeat(f, axis=1).repeat(f, axis=2)
    return Scene(scene.seed, image, masks, list(scene.kinds))


def _render(seeds: np.ndarray, scene_config: ShapesConfig, size: int) -> list[Scene]:
    return [upscale_scene(render_scene(int(s), scene_config), size) for s in seeds]


def _render_pool(workers: int) -> tuple[Executor, int]:
    """The executor that renders upcoming steps' scenes, and how many steps it runs ahead."""
    if workers <= 0:
        return ThreadPoolExecutor(1, thread_name_prefix="render-scenes"), 1
    # spawn: the workers need only numpy and OpenCV, and forking a process whose torch and
    # OpenCV thread pools are running can leave a child waiting on a lock forever.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")), workers


def _resume_state(out: Path, identity: dict) -> dict | None:
    """The checkpoint of an earlier run of the same recipe in ``out``, or None if there is none.

    A checkpoint of another recipe (training config, model or scenes differ) is refused with
    the differing keys named, so a resume never silently mixes two runs. A training setting
    or model setting added after the checkpoint was written counts as its default there (the
    run used it).
    """
    path = out / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = load_state(path)
    saved = json.loads(state["identity"])
    if isinstance(saved.get("train"), dict):
        saved["train"] = {**_train_defaults(), **saved["train"]}
    try:  # read the model back through its config, which fills in later settings' defaults
        saved["model"] = json.loads(SamConfig.from_json(json.dumps(saved["model"])).to_json())
    except (KeyError, TypeError, ValueError, AttributeError):
        pass  # not a config this version can read: the comparison below names the difference
    if saved != identity:
        diff = sorted(
            f"{part}.{k}"
            for part in identity
            for k in set(identity[part]) | set(saved.get(part, {}))
            if identity[part].get(k) != saved.get(part, {}).get(k)
        )
        raise ValueError(
            f"{path} belongs to another run (differs in {', '.join(diff) or 'layout'}); "
            "use another output folder or resume with the same settings"
        )
    return state


def _train_defaults() -> dict:
    """The recipe settings' defaults (those a resumed run may change left out)."""
    fields = dataclasses.fields(SamTrainConfig)
    return {
        f.name: f.default
        for f in fields
        if f.default is not dataclasses.MISSING and f.name not in SamTrainConfig.RESUME_FREE
    }


def _identity(model: Sam, cfg: SamTrainConfig, scene_config: ShapesConfig) -> dict:
    """What must not change between a run and its resumption."""
    train = {k: v for k, v in cfg.to_dict().items() if k not in SamTrainConfig.RESUME_FREE}
    scenes = json.loads(json.dumps(dataclasses.asdict(scene_config)))
    return {"train": train, "model": json.loads(model.config.to_json()), "scenes": scenes}


def train_sam(
    model: Sam,
    cfg: SamTrainConfig,
    scene_config: ShapesConfig | None = None,
    progress: bool = True,
    resume: bool = False,
    budget_seconds: float | None = None,
) -> TrainSummary:
    """Train ``model`` in place on shapes scenes; writes the run folder ``cfg.out``.

    ``resume``: continue from ``cfg.out``'s checkpoint when there is one (same recipe
    required); otherwise a fresh run replaces the folder's metrics. ``budget_seconds``:
    stop after the step that spends it (checkpoint and weights saved, ``finished`` False),
    to be resumed later. ``scene_config`` (default: scenes at the model's input size) may
    render smaller scenes than the model takes: they are upscaled to its input
    (:func:`upscale_scene`), as the predictor upscales a small image.
    """
    from tqdm import tqdm

    from ..distill.report import MetricsLog
    from ..distill.train import lr_factor, param_groups
    from .report import plot_training_curves

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    scene_config = scene_config or ShapesConfig(size=model.image_size)
    if model.image_size % scene_config.size:
        raise ValueError(
            f"model input {model.image_size} is not a whole multiple of the scene size "
            f"{scene_config.size}"
        )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    identity = _identity(model, cfg, scene_config)
    state = _resume_state(out, identity) if resume else None
    if cfg.init and state is None:  # before the folder is touched: a bad file changes nothing
        # a model of another input size starts with the init's position tables resized
        init = resize_position_tables(read_state_dict(cfg.init), model.state_dict())
        load_state_dict_strict(model, init)
    (out / "config.json").write_text(
        json.dumps({"train": cfg.to_dict(), "model": json.loads(model.config.to_json())}, indent=1)
    )
    log = MetricsLog(out / "metrics.jsonl")
    log.truncate_after(state["step"] if state else 0)

    torch.manual_seed(cfg.seed)
    model.to(cfg.device)
    module = _trainable_parameters(model, cfg.trainable)
    opt = torch.optim.AdamW(param_groups(module, cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.steps, cfg.warmup, cfg.lr, cfg.min_lr)
    )
    monitor_lo = SPLITS["heldout"][0] + MONITOR_OFFSET
    monitor = _render(monitor_lo + np.arange(cfg.eval_scenes), scene_config, model.image_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    first, prior_seconds, eval_seconds = 0, 0.0, 0.0
    # CPU seconds of training proper (this process, all threads; evaluations excluded): the
    # cost measure that stays fair when the machine is shared, unlike wall-clock.
    prior_cpu, eval_cpu, cpu0 = 0.0, 0.0, time.process_time()
    miou = float("nan")
    start = time.perf_counter()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        restore_rng(state["rng"])
        first, miou = state["step"], state["miou"]
        prior_seconds, eval_seconds = state["seconds"], state["eval_seconds"]
        prior_cpu = state.get("cpu_seconds", 0.0)
    else:
        miou = point_miou(model, monitor) if cfg.eval_scenes else float("nan")
        log.write({"kind": "eval", "step": 0, "miou_point_gt": miou, "seconds": 0.0})
        eval_seconds = time.perf_counter() - start
        eval_cpu = time.process_time() - cpu0

    def elapsed() -> float:
        return prior_seconds + time.perf_counter() - start

    def cpu_seconds() -> float:
        return prior_cpu + time.process_time() - cpu0 - eval_cpu

    def checkpoint(done: int) -> None:
        save_state(
            out / CHECKPOINT_FILE,
            {
                "identity": json.dumps(identity, sort_keys=True),
                "step": done,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "rng": capture_rng(),
                "miou": miou,
                "seconds": elapsed(),
                "eval_seconds": eval_seconds,
                "cpu_seconds": cpu_seconds(),
            },
        )

    _train_mode(model, cfg.trainable)
    bar = tqdm(
        total=cfg.steps,
        initial=first,
        desc=f"train {model.config.name}",
        unit="step",
        disable=not progress,
    )
    window = time.perf_counter()
    done = first
    # Upcoming steps' scenes are rendered while this step trains: by default the next step's
    # in a helper thread (OpenCV and numpy release the GIL; rendering is ~20% of a step on one
    # core otherwise), with render_workers > 0 that many steps ahead in as many processes.
    pool, ahead = _render_pool(cfg.render_workers)
    pending: deque[tuple[np.random.Generator, Future]] = deque()

    def render_ahead(step: int) -> None:
        if step < cfg.steps:
            step_rng, seeds = _step_seeds(cfg, step)
            pending.append((step_rng, pool.submit(_render, seeds, scene_config, model.image_size)))

    for step in range(first, first + ahead):
        render_ahead(step)
    for step in range(first, cfg.steps):
        rng, future = pending.popleft()
        scenes = future.result()
        render_ahead(step + ahead)
        loss, parts = step_loss(model, scenes, cfg, rng, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        done = step + 1
        bar.update(1)
        if done % cfg.log_every == 0 or done == cfg.steps:
            now = time.perf_counter()
            rate = cfg.log_every * cfg.batch_size / max(now - window, 1e-9)
            window = now
            rec = {"kind": "train", "step": done, "loss": float(loss.detach()), "lr": lr, **parts}
            rec.update(scenes_per_s=rate, seconds=elapsed(), cpu_seconds=cpu_seconds())
            log.write(rec)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", iou=f"{parts.get('iou', 0):.2f}")
        if cfg.eval_scenes and (done % cfg.eval_every == 0 or done == cfg.steps):
            t_eval, c_eval = time.perf_counter(), time.process_time()
            miou = point_miou(model, monitor)
            log.write(
                {"kind": "eval", "step": done, "miou_point_gt": miou, "seconds": elapsed(),
                 "cpu_seconds": cpu_seconds()}
            )  # fmt: skip
            bar.write(f"step {done}: held-out 1-point mIoU vs GT {miou:.3f}")
            model.eval()
            save_checkpoint(model, out / MODEL_FILE, model.config)
            _train_mode(model, cfg.trainable)
            eval_seconds += time.perf_counter() - t_eval
            eval_cpu += time.process_time() - c_eval
            window += time.perf_counter() - t_eval  # keep evaluation out of the scenes/s rate
        out_of_budget = budget_seconds is not None and time.perf_counter() - start >= budget_seconds
        if (
            done == cfg.steps
            or out_of_budget
            or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
        ):
            checkpoint(done)
        if out_of_budget and done < cfg.steps:
            break
    pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    model.eval()
    seconds = elapsed()
    save_checkpoint(model, out / MODEL_FILE, model.config)
    train_seconds = seconds - eval_seconds
    finished = done == cfg.steps
    cpu = cpu_seconds()
    if finished:
        info = {
            "steps": cfg.steps, "seconds": seconds, "train_seconds": train_seconds,
            "cpu_seconds": cpu,
        }  # fmt: skip
        (out / "done.json").write_text(json.dumps(info))
    plot_training_curves(out)
    return TrainSummary(out, done, seconds, train_seconds, miou, finished, cpu)
