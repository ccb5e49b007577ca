"""The ``cacscore`` command: one Typer app, one module per command.

Each command module defines ``register(app)``; heavy libraries (PyTorch,
SimpleITK, matplotlib) are imported inside the commands so that
``cacscore --help`` and small commands start fast.
"""

from __future__ import annotations

import typer

from cacscore import __version__

app = typer.Typer(
    name="cacscore",
    help="Automatic coronary artery calcium scoring from non-contrast ECG-gated cardiac CT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cacscore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Automatic coronary artery calcium scoring from non-contrast ECG-gated cardiac CT."""


def main(args: list[str] | None = None) -> None:
    """Run the command line; ``args`` defaults to ``sys.argv[1:]`` (callable from tests)."""
    app(args=args)


# The command modules come after `app`: each adds its command(s) to it, listed in --help in this order.
from cacscore.cli import annotations as _annotations  # noqa: E402
from cacscore.cli import batch as _batch  # noqa: E402
from cacscore.cli import choose_members as _choose_members  # noqa: E402
from cacscore.cli import demo as _demo  # noqa: E402
from cacscore.cli import evaluate as _evaluate  # noqa: E402
from cacscore.cli import hybrid as _hybrid  # noqa: E402
from cacscore.cli import listen as _listen  # noqa: E402
from cacscore.cli import pacs as _pacs  # noqa: E402
from cacscore.cli import phantom as _phantom  # noqa: E402
from cacscore.cli import score as _score  # noqa: E402
from cacscore.cli import series as _series  # noqa: E402
from cacscore.cli import serve as _serve  # noqa: E402
from cacscore.cli import train as _train  # noqa: E402
from cacscore.cli import train_lesion_filter as _train_lesion_filter  # noqa: E402

for _command in (
    _series,
    _score,
    _annotations,
    _evaluate,
    _train,
    _train_lesion_filter,
    _choose_members,
    _serve,
    _phantom,
    _hybrid,
    _demo,
    _listen,
    _pacs,
    _batch,
):
    _command.register(app)
