"""``mobilesam annotate``: export or import the annotations of a project folder.

A thin layer over :mod:`mobilesam.serve.formats` and the project store that
``mobilesam serve --project DIR`` writes (``DIR/annotations.sqlite``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import fail

FORMATS = ("coco", "coco-polygon", "yolo", "png")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "annotate",
        help="export / import the annotations of a project folder",
        description="Export a project's objects (COCO JSON with RLE or polygons, YOLO "
        "segmentation txt, PNG label maps) or add a COCO file's annotations to it.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = actions.add_parser("export", help="write the annotations in a format")
    e.add_argument("project", help="the project folder (images + annotations.sqlite)")
    e.add_argument("--format", choices=FORMATS, default="coco", help="default coco (RLE)")
    e.add_argument("--out", required=True, help="a .json file for coco, a folder otherwise")
    e.add_argument("--image", help="only this image (file name)")
    i = actions.add_parser("import", help="add the annotations of a COCO JSON file")
    i.add_argument("project", help="the project folder")
    i.add_argument("coco", help="COCO instance segmentation JSON (images matched by file name)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..io import atomic_write_text
    from ..serve import formats
    from ..serve.errors import ServeError
    from ..serve.projects import ProjectStore

    if not Path(args.project).is_dir():
        return fail(f"{args.project}: no such project folder")
    store = ProjectStore(args.project)
    try:
        if args.action == "import":
            coco = json.loads(Path(args.coco).read_text())
            report = formats.from_coco(store, coco)
            print(f"added {report['added']} objects")
            for name in report["skipped_images"]:
                print(f"skipped: {name} is not in the project folder")
            for problem in report["problems"]:
                print(f"skipped: {problem}")
            return 0
        if args.format.startswith("coco"):
            seg = "polygon" if args.format == "coco-polygon" else "rle"
            coco = formats.to_coco(store, args.image, segmentation=seg)
            atomic_write_text(args.out, json.dumps(coco))
            print(f"{args.out}: {len(coco['annotations'])} objects, {len(coco['images'])} images")
            return 0
        writer = formats.write_yolo if args.format == "yolo" else formats.write_label_maps
        paths = writer(store, args.out, args.image)
        print(f"{args.out}: {len(paths)} files")
        return 0
    except (ServeError, OSError, ValueError) as e:
        return fail(str(e))
    finally:
        store.close()
