"""Helpers shared by the command modules: error reporting and output folders."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from cacscore.errors import CacScoreError, CacScoreWarning

#: Messages for people go to stderr so that ``--json`` output on stdout stays clean.
err_console = Console(stderr=True, highlight=False)


def out_console() -> Console:
    """Console for tables on stdout.

    Piped or redirected output gets 120 columns instead of rich's 80, which cut the
    lesion table's headers and UIDs.
    """
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn :class:`CacScoreError` into a one-line ``error: ...`` on stderr and exit code 1.

    :class:`CacScoreWarning` warnings raised inside are printed as
    ``warning: ...`` lines instead of Python's warning format.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CacScoreWarning)
        try:
            yield
        except CacScoreError as exc:
            _print_warnings(caught)
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(code=1) from None
        except OSError as exc:
            # A file that cannot be written (permissions, a full disk, a read-only place) is the user's to fix.
            _print_warnings(caught)
            where = f"{exc.filename}: " if exc.filename else ""
            err_console.print(f"[bold red]error:[/] {escape(where + str(exc.strerror or exc))}", soft_wrap=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            _print_warnings(caught)
            err_console.print("interrupted; finished work is kept, run the command again to resume")
            raise typer.Exit(code=130) from None
    _print_warnings(caught)


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for record in caught:
        if issubclass(record.category, CacScoreWarning):
            err_console.print(f"[yellow]warning:[/] {escape(str(record.message))}", soft_wrap=True)
        else:
            warnings.showwarning(record.message, record.category, record.filename, record.lineno)


def prepare_output_dir(out: Path, products: list[str], *, force: bool) -> Path:
    """Create ``out`` and refuse to overwrite any of ``products`` in it unless ``force``.

    Raises
    ------
    CacScoreError
        If a product exists already and ``force`` is false, or ``out`` is a file.
    """
    if out.exists() and not out.is_dir():
        raise CacScoreError(f"{out}: output path exists and is not a folder")
    existing = [name for name in products if (out / name).exists()]
    if existing and not force:
        raise CacScoreError(
            f"{out}: already holds {', '.join(existing)}; use --force to overwrite or choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacScoreError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    return out


def is_tty() -> bool:
    """True when stderr is a terminal (progress bars are shown only then or when asked)."""
    return sys.stderr.isatty()
