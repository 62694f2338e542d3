"""`python -m slimnet arch ...`: inspect, create and import architecture specs.

Kept out of cli.py, which every DVC stage runs: how these tools print is no stage's business.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from slimnet.console.errors import SlimnetError
from slimnet.console.output import out, user_errors

arch_app = typer.Typer(no_args_is_help=True, help="Inspect, create and import architecture specs.")


def with_arch_tools(app: typer.Typer) -> typer.Typer:
    """Attach the `arch` group to the stage commands' app (once)."""
    if not any(group.name == "arch" for group in app.registered_groups):
        app.add_typer(arch_app, name="arch")
    return app


def _show(spec, as_json: bool) -> None:
    c = spec.cost()
    if as_json:
        print(
            json.dumps(
                {
                    "arch": spec.arch,
                    "resolution": spec.resolution,
                    "flops": c.flops,
                    "params": c.params,
                    "memory": c.memory,
                    "channels": spec.channels,
                }
            )
        )
        return
    table = Table("unit", "channels", title=f"{spec.arch} at {spec.resolution}px ({spec.note or 'spec'})")
    for unit, channels in spec.channels.items():
        table.add_row(unit, str(channels))
    out.print(table)
    out.print(f"FLOPs {c.flops:,}  params {c.params:,}  memory {c.memory / 2**20:.2f} MB")


@arch_app.command("show")
@user_errors
def arch_show(
    spec: Path = typer.Argument(..., help="An arch spec JSON file."),
    as_json: bool = typer.Option(False, "--json"),
    supernet: Optional[Path] = typer.Option(None, "--supernet", help="Also check the spec is a configuration of this supernet."),
) -> None:
    """Per-unit channels, FLOPs, params and memory of a spec."""
    from slimnet.space.spec import load_spec

    loaded = load_spec(spec)
    if supernet is not None:
        from slimnet.training.sandwich import check_config, load_supernet_file

        _, reference, space = load_supernet_file(supernet)
        if (loaded.arch, tuple(loaded.depth)) != (reference.arch, tuple(reference.depth)):
            raise SlimnetError(
                f"{spec} is {loaded.arch} at depth {list(loaded.depth)}, the supernet is {reference.arch} at depth {list(reference.depth)}"
            )
        check_config(space, loaded.channels)
    _show(loaded, as_json)


@arch_app.command("uniform")
@user_errors
def arch_uniform(
    arch: str = typer.Option(..., "--arch"),
    width: float = typer.Option(1.0, "--width"),
    cifar: bool = typer.Option(False, "--cifar", help="Small-input variant: 32 px, 10 classes by default."),
    resolution: Optional[int] = typer.Option(None, "--resolution"),
    classes: Optional[int] = typer.Option(None, "--classes"),
    in_channels: int = typer.Option(3, "--in-channels"),
    out_path: Path = typer.Option(..., "--out"),
) -> None:
    """Write the spec of the default network at one width multiplier."""
    from slimnet.space.models import check_arch
    from slimnet.space.spec import save_spec, uniform_spec

    check_arch(arch)
    resolution = resolution or (32 if cifar else 224)
    classes = classes or (10 if cifar else 1000)
    if resolution < 1 or classes < 1 or in_channels < 1:
        raise SlimnetError("--resolution, --classes and --in-channels must be positive")
    spec = uniform_spec(arch, width, resolution=resolution, num_classes=classes, in_channels=in_channels, cifar=cifar)
    save_spec(spec, out_path)
    _show(spec, as_json=False)


@arch_app.command("import-autoslim")
@user_errors
def arch_import(
    arch: str = typer.Option(..., "--arch"),
    channels: str = typer.Option(..., "--channels", help='The release\'s flat list, e.g. "8,8,96,...".'),
    resolution: int = typer.Option(224, "--resolution"),
    cifar: bool = typer.Option(False, "--cifar"),
    out_path: Path = typer.Option(..., "--out"),
) -> None:
    """Import a published AutoSlim channel list into a spec."""
    from slimnet.space.models import check_arch
    from slimnet.space.published import import_autoslim, parse_channel_list
    from slimnet.space.spec import save_spec

    check_arch(arch)
    spec = import_autoslim(arch, parse_channel_list(channels), resolution=resolution, cifar=cifar)
    save_spec(spec, out_path)
    _show(spec, as_json=False)
