"""Helpers shared by the command modules: error reporting and output folders."""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.markup import escape

from cacscore.errors import CacScoreError, CacScoreWarning
from cacscore.precision import Precision

#: Messages for people go to stderr so that ``--json`` output on stdout stays clean.
err_console = Console(stderr=True, highlight=False)

#: ``--model`` of the commands that score series as they arrive (``listen``, ``pacs pull``).
ModelOption = Annotated[
    Path | None,
    typer.Option("--model", help="Model folder (default: $CACSCORE_MODEL_DIR or the shipped model)."),
]
#: ``--skip-domain-check`` of the same commands.
SkipDomainCheckOption = Annotated[
    bool,
    typer.Option(
        "--skip-domain-check",
        help="Score series the domain check refuses (no heart in view, contrast); the report says so.",
    ),
]

#: ``--precision`` of the commands that run the model (``score``, ``batch``, ``listen``, ``pacs pull``).
PrecisionOption = Annotated[
    Precision | None,
    typer.Option(
        "--precision",
        help="Inference precision (default: the model's, fp32). bf16 is about twice as fast on CPUs with "
        "native bf16 (AVX512-BF16, AMX) and slower elsewhere; its masks can differ from fp32's, most on "
        "scans unlike the training phantoms.",
    ),
]


def out_console() -> Console:
    """Console for tables on stdout.

    Piped or redirected output gets 120 columns instead of rich's 80, which cut the
    lesion table's headers and UIDs.
    """
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


#: Warning kinds meant for developers (API changes, unclosed files), not for the person running a command.
_DEVELOPER_WARNINGS = (
    DeprecationWarning,
    PendingDeprecationWarning,
    FutureWarning,
    ImportWarning,
    ResourceWarning,
)
#: Longest library warning text shown (characters); some libraries warn with whole paragraphs.
_MAX_WARNING_CHARS = 200
#: Distinct warning lines remembered per context, so a warning raised per slice or per request is shown
#: once without the memory of a long-running server growing with every repeat.
_MAX_REMEMBERED_WARNINGS = 1000
_showing = threading.local()


def warning_line(message: Warning | str, category: type[Warning], filename: str) -> str | None:
    """The one line (without ``warning:``) shown for a warning, or None where it is not shown.

    :class:`CacScoreWarning` messages are shown as they are. Developer warnings
    (deprecations, unclosed files) are not shown. Any other library warning
    (pydicom, numpy, ITK...) becomes one line that names the library; cacscore's
    readers check the conditions that matter themselves and say so in their own
    warnings or errors, so these lines are a trace, not the diagnosis.

    Examples
    --------
    >>> warning_line("kVp is 100", CacScoreWarning, "checks.py")
    'kVp is 100'
    >>> warning_line("old API", DeprecationWarning, "x.py") is None
    True
    """
    if issubclass(category, CacScoreWarning):
        return one_line(str(message))
    if issubclass(category, _DEVELOPER_WARNINGS):
        return None
    text = one_line(str(message))
    if len(text) > _MAX_WARNING_CHARS:
        text = text[: _MAX_WARNING_CHARS - 3] + "..."
    match = re.search(r"(?:site|dist)-packages[\\/]+([A-Za-z0-9_]+)", filename)
    library = match.group(1) if match else Path(filename).stem or "a library"
    return f"{library} reported: {text}"


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters as spaces, so that a message stays one line.

    Examples
    --------
    >>> one_line("IM1.dcm: bad\\x00value\\nhere")
    'IM1.dcm: bad value here'
    """
    if text.isprintable():
        return text
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show each warning raised inside as one ``warning: ...`` line on stderr, as it happens.

    The one place where every entry point (a command, the review server, a
    batch or a listener loop) turns Python warnings into lines for people.
    Warnings are shown at once and never collected: nothing grows while a
    server runs, and showing a warning can never raise another that is shown
    in turn (a warning raised while one is shown is dropped), so the handler
    cannot loop. Each distinct line is shown once.
    """
    seen: set[str] = set()

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if getattr(_showing, "active", False):
            return
        _showing.active = True
        try:
            text = warning_line(message, category, filename)
            if text is None or text in seen:
                return
            if len(seen) < _MAX_REMEMBERED_WARNINGS:
                seen.add(text)
            err_console.print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)
        finally:
            _showing.active = False

    with warnings.catch_warnings():
        warnings.simplefilter("always", CacScoreWarning)
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn :class:`CacScoreError` into a one-line ``error: ...`` on stderr and exit code 1.

    Warnings raised inside are shown as ``warning: ...`` lines as they
    happen (see :func:`warnings_as_lines`), never in Python's format.
    """
    with warnings_as_lines():
        try:
            yield
        except CacScoreError as exc:
            err_console.print(f"[bold red]error:[/] {escape(one_line(str(exc)))}", soft_wrap=True)
            raise typer.Exit(code=1) from None
        except OSError as exc:
            # A file that cannot be written (permissions, a full disk, a read-only place) is the user's to
            # fix.
            where = f"{exc.filename}: " if exc.filename else ""
            text = one_line(where + str(exc.strerror or exc))
            err_console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; finished work is kept, run the command again to resume")
            raise typer.Exit(code=130) from None


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
