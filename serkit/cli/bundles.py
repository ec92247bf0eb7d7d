"""``serkit export``, ``info`` and ``serve``: what is done with a finished bundle.

``serve``'s options are generated from :class:`serkit.config.ServeSettings`.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.markup import escape

from serkit.cli import common
from serkit.cli.common import add_force_option
from serkit.config import ServeSettings
from serkit.settings import add_dataclass_arguments, dataclass_from_args


def cmd_export(args: argparse.Namespace) -> int:
    from serkit.export import export_onnx

    if not args.onnx:
        raise ValueError("name a format to export to: --onnx (the only one so far)")
    r = export_onnx(args.bundle, args.output, int8=args.int8, exporter=args.exporter, opset=args.opset,
                    force=args.force, int8_only=args.int8_only)
    for precision, name in r.files.items():
        p = r.parity[precision]
        size = (r.folder / name).stat().st_size / 1e6
        common.console.print(f"{r.folder / name}  {precision}  {size:.2f} MB  max |p - p_torch| "
                             f"{p['max_abs_prob_diff']:.1e}  top-1 agreement {p['top1_agreement']:.0%}",
                             highlight=False, markup=False, soft_wrap=True)
    common.console.print(f"use it: serkit predict --model {r.folder} FILES", highlight=False, markup=False,
                         soft_wrap=True)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from rich.table import Table

    from serkit.model_card import model_card_rows

    title, rows = model_card_rows(args.bundle)
    grid = Table.grid(padding=(0, 1, 0, 0))         # long values wrap under themselves
    grid.add_column(no_wrap=True, min_width=15)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row("  " + escape(key), escape(value))
    common.console.print(title, highlight=False, markup=False, soft_wrap=True)
    common.console.print(grid, highlight=False)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from serkit.web.serve import exit_at_once, serve

    stopped = serve(dataclass_from_args(ServeSettings, args),
                    announce=lambda line: common.console.print(line, highlight=False, markup=False, soft_wrap=True))
    if stopped:          # SIGTERM/SIGINT: all closed; skip unloading libraries (`docker stop` stays fast)
        exit_at_once(0)
    return 0


def add_parsers(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register export, info and serve (``add`` makes a subcommand's parser)."""
    p = add("export", help="export a bundle to ONNX (fp32, optionally int8)")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder")
    p.add_argument("--onnx", action="store_true", help="export to ONNX (waveforms in, logits out)")
    p.add_argument("--int8", action="store_true", help="also write a dynamically quantised int8 model")
    p.add_argument("--int8-only", action="store_true",
                   help="write the int8 model alone (the fp32 graph is checked, then left out)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                   help="torch.onnx exporter: dynamo (~30 s) or the legacy torchscript (~1 s); default: %(default)s")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18 dynamo, 17 torchscript)")
    add_force_option(p, "write model.onnx and config.json into a -o folder holding other files")
    p.set_defaults(func=cmd_export)

    p = add("info", help="print a bundle's model card (training data, held-out speakers, test metrics)")
    p.add_argument("bundle", nargs="?", default=None, help="bundle folder or a shipped model's name, default or fast (default: default)")
    p.set_defaults(func=cmd_info)

    p = add("serve", help="serve the web page and JSON API (waitress)",
            description="Every option is a field of serkit.config.ServeSettings.")
    add_dataclass_arguments(p, ServeSettings)
    p.set_defaults(func=cmd_serve)
