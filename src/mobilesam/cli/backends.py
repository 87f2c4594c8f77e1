"""``mobilesam backends``: what this machine can run, what was chosen, measured how."""

from __future__ import annotations

import argparse
import json

from ._common import add_model_args, fail


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "backends",
        help="inference backends on this machine and the automatic choice",
        description="List the registered backends (and why a backend cannot run here), and "
        "the backend chosen for a model on this machine with its measured times and fidelity. "
        "--choose measures again.",
    )
    add_model_args(p)
    p.add_argument("--random-weights", action="store_true", help="a model with generated weights")
    p.add_argument("--choose", action="store_true", help="measure the candidates (again) now")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run(args: argparse.Namespace) -> int:
    from ..backends import get_backend, list_backends
    from ..backends.artifacts import ArtifactStore
    from ..backends.cpu import cpu_info
    from ..backends.predictor import Predictor, weights_id

    model_name, flags = cpu_info()
    registered = []
    for name in list_backends():
        spec = get_backend(name)
        registered.append(
            {
                "backend": name,
                "precision": spec.precision,
                "torch": spec.needs_torch,
                "unavailable": spec.check(),
            }
        )
    try:
        wid, _ = weights_id(args.model, args.checkpoint, args.random_weights, download=False)
    except Exception as e:  # noqa: BLE001 - no weights: list the backends anyway
        wid, note = None, str(e)
    else:
        note = None
    choice = None
    if wid is not None:
        store = ArtifactStore(args.model, wid)
        if args.choose and store.choice_path.exists():
            store.choice_path.unlink()
        choice = store.read_choice()
        if args.choose:
            try:
                choice = Predictor.load(
                    args.model,
                    args.checkpoint,
                    random_weights=args.random_weights,
                    device=args.device,
                ).choice
            except Exception as e:  # noqa: BLE001
                return fail(f"could not choose a backend: {e}")
    if args.json:
        print(
            json.dumps(
                {
                    "cpu": model_name,
                    "flags": sorted(flags),
                    "backends": registered,
                    "choice": choice,
                    "note": note,
                },
                indent=2,
            )
        )
        return 0
    simd = sorted(f for f in flags if "avx" in f or "amx" in f)
    print(f"CPU: {model_name}\nflags: {' '.join(simd)}")
    rows = [["backend", "precision", "torch", "here"]]
    rows += [
        [
            r["backend"],
            r["precision"],
            "yes" if r["torch"] else "no",
            "yes" if r["unavailable"] is None else f"no: {r['unavailable']}",
        ]
        for r in registered
    ]
    print("\n" + _table(rows))
    if choice is None:
        print(
            f"\nno choice recorded for {args.model} on this machine yet"
            + (f" ({note})" if note else "; run with --choose or use --backend auto once")
        )
        return 0
    rows = [["candidate", "encoder ms", "click ms", "IoU mean/min", "max logit diff", "faithful"]]
    for c in choice["candidates"]:
        fid = c.get("fidelity") or {}
        rows.append(
            [
                c["backend"] + (" *" if c["backend"] == choice["backend"] else ""),
                f"{c['encoder_ms']:.1f}" if c.get("encoder_ms") else "-",
                f"{c['click_ms']:.1f}" if c.get("click_ms") else "-",
                f"{fid['mask_iou_mean']:.4f}/{fid['mask_iou_min']:.4f}" if fid else "-",
                f"{fid['low_res_max_abs']:.2g}" if fid else "-",
                c.get("error") or ("yes" if c["faithful"] else "no"),
            ]
        )
    print(f"\nchosen for {args.model} (measured {choice['measured_at']}): {choice['backend']}\n")
    print(_table(rows))
    return 0
