"""Saving figures and tables the way every notebook does: PNG and PDF (and Markdown), named after
the paper, each stamped with the profile and the data it was made from.

The stamp is one line, ``profile: default · data: coco-sample val2017 (158 images)``: drawn
under a figure (:func:`save_figure`) and written as the last line of a Markdown table
(:func:`save_table`) or findings file (:func:`save_findings`), so a smoke-profile figure can
never pass for a default one.

Every file is written so that the same content gives the same bytes: :func:`write_figure` is
the one place a figure becomes a PNG or PDF, without the writing software's version or the date
in the file's metadata; a stamp names paths under the checkout relative to it. Re-running a
notebook from the same records therefore leaves its outputs unchanged; only the timing-dependent
outputs under ``timings/`` (:func:`gmaiou.paper.paths.timings_dir`) change from run to run.

``name`` may name a subfolder of the profile's figures folder, e.g. ``timings/model_speed``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from numbers import Integral, Real
from pathlib import Path

from gmaiou.paper.paths import figures_dir, repo_root

__all__ = [
    "STABLE_METADATA",
    "format_cell",
    "provenance",
    "save_figure",
    "save_stem",
    "save_findings",
    "save_no_result",
    "read_headline",
    "HEADLINE",
    "save_table",
    "table_figure",
    "text_figure",
    "write_figure",
]

#: Metadata per file format that would otherwise carry matplotlib's version or the time of
#: writing (``None`` leaves the key out of the file).
STABLE_METADATA: dict[str, dict[str, None]] = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
}


def provenance(profile: str, source: str | None = None) -> str:
    """The stamp line: ``profile: NAME`` and, when given, ``· data: SOURCE``.

    A path under this checkout in ``source`` is written relative to it, so the stamp reads
    the same in every checkout.
    """
    if not profile or not isinstance(profile, str):
        raise ValueError(f"profile must be a non-empty string, got {profile!r}")
    if source:
        source = source.replace(f"{repo_root()}/", "")
    return f"profile: {profile}" + (f" · data: {source}" if source else "")


def _output(profile: str, name: str, suffix: str) -> Path:
    """``<figures of the profile>/<name><suffix>``, its folder created."""
    path = figures_dir(profile) / f"{name}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_figure(fig, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (``.png`` or ``.pdf``), the same figure always to the same bytes.

    The format follows the suffix; PNG at ``dpi``; the bounding box tight; no software version
    or creation date in the metadata (:data:`STABLE_METADATA`).
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in STABLE_METADATA:
        raise ValueError(f"write a figure as .png or .pdf, not {path.name!r}")
    options = {"dpi": dpi} if fmt == "png" else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(
        path, format=fmt, bbox_inches="tight", metadata=dict(STABLE_METADATA[fmt]), **options
    )
    return path


def save_figure(
    fig, name: str, profile: str = "default", dpi: int = 150, *, source: str | None = None
) -> list[Path]:
    """Write ``fig`` as ``<name>.png`` and ``<name>.pdf`` into the profile's figure folder.

    A footer under the figure states :func:`provenance` (``profile`` and ``source``, the
    data it was made from); the files are written by :func:`write_figure`.
    """
    # Below everything already drawn (legends placed under the axes included); the layout
    # is frozen first so that a layout engine does not move things onto the footer.
    fig.canvas.draw()
    fig.set_layout_engine("none")
    lowest = fig.get_tightbbox(fig.canvas.get_renderer()).y0 / fig.get_figheight()
    fig.text(
        0.5,
        min(lowest, 0.0) - 0.01,
        provenance(profile, source),
        ha="center",
        va="top",
        fontsize=8,
        color="0.35",
        transform=fig.transFigure,
    )
    return [write_figure(fig, _output(profile, name, suffix), dpi) for suffix in (".png", ".pdf")]


def save_table(
    frame_or_text, name: str, profile: str = "default", *, source: str | None = None
) -> Path:
    """Write a table as Markdown (``<name>.md``): a pandas DataFrame or a string, then the stamp.

    The last line is ``*profile: ... · data: ...*`` (:func:`provenance`), so a table
    included elsewhere (the README) carries where it came from.
    """
    out = _output(profile, name, ".md")
    text = (
        frame_or_text if isinstance(frame_or_text, str) else frame_or_text.to_markdown(index=False)
    )
    out.write_text(f"{text.rstrip()}\n\n*{provenance(profile, source)}*\n")
    return out


def save_findings(
    lines: Iterable[str],
    name: str,
    profile: str = "default",
    *,
    source: str | None = None,
    headline: str | None = None,
) -> Path:
    """Write sentences computed from a table as ``<name>_findings.md``: one bullet each, then
    the stamp (:func:`save_table`).

    ``headline``: the result in one short sentence, computed like the bullets; written first,
    as ``**At a glance:** ...``, where the README's results-at-a-glance table reads it
    (:func:`read_headline`).
    """
    lines = list(lines)
    if any("\n" in line for line in lines):
        raise ValueError("a finding is one line: pass each sentence as its own item")
    text = "\n".join(f"- {line}" for line in lines) or "- nothing to report: no record was found"
    if headline is not None:
        if not headline.strip() or "\n" in headline:
            raise ValueError(f"a headline is one non-empty line, got {headline!r}")
        text = f"{HEADLINE}{headline.strip()}\n\n{text}"
    return save_table(text, f"{name}_findings", profile, source=source)


def save_stem(
    name: str,
    table,
    fig,
    lines: Iterable[str],
    headline: str,
    profile: str = "default",
    *,
    source: str | None = None,
) -> list[Path]:
    """One stem's four files: ``<name>.md`` (:func:`save_table`), ``.png`` and ``.pdf``
    (:func:`save_figure`) and ``<name>_findings.md`` headed by ``headline``
    (:func:`save_findings`), all with the same stamp."""
    paths = [save_table(table, name, profile, source=source)]
    paths += save_figure(fig, name, profile, source=source)
    paths.append(save_findings(lines, name, profile, source=source, headline=headline))
    return paths


def text_figure(text: str, width: int = 70):
    """A figure that only says ``text`` (wrapped at ``width`` characters): what a figure shows
    where its data is missing (:func:`save_no_result`)."""
    import matplotlib.pyplot as plt

    wrapped = textwrap.fill(text, width)
    fig = plt.figure(figsize=(6.4, 0.8 + 0.25 * wrapped.count("\n")))
    fig.text(0.5, 0.5, wrapped, ha="center", va="center", fontsize=10)
    return fig


def save_no_result(
    name: str,
    lines: Iterable[str],
    headline: str,
    profile: str = "default",
    *,
    source: str | None = None,
    tables: Iterable[str] = (),
) -> list[Path]:
    """A stem whose result cannot be computed yet (e.g. no clean run record): the files a
    result would have, each saying why instead of keeping an older result.

    ``<name>.md`` and each of ``tables`` hold ``lines`` (one paragraph each); ``<name>.png``
    and ``.pdf`` show ``headline`` as text; ``<name>_findings.md`` holds ``lines`` under
    ``headline`` (:func:`save_findings`). Every file carries the stamp of ``source``.
    """
    import matplotlib.pyplot as plt

    lines = list(lines)
    text = "\n\n".join(lines)
    paths = [save_table(text, name, profile, source=source)]
    paths += [save_table(text, table, profile, source=source) for table in tables]
    fig = text_figure(headline)
    paths += save_figure(fig, name, profile, source=textwrap.fill(source or "", 110) or None)
    plt.close(fig)
    paths.append(save_findings(lines, name, profile, source=source, headline=headline))
    return paths


#: How a findings file's headline line starts (:func:`save_findings`, :func:`read_headline`).
HEADLINE = "**At a glance:** "


def read_headline(path: str | Path) -> str | None:
    """The headline of a findings file written by :func:`save_findings`; ``None`` without one."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(HEADLINE):
            return line[len(HEADLINE) :].strip()
    return None


def format_cell(value, digits: int = 2) -> str:
    """A table cell: integers as they are, other numbers with ``digits`` decimals, text unchanged.

    Numbers of 10,000 and more, or non-zero ones under ``10**-digits``, use 3 significant
    digits in scientific notation, so a column never mixes ``0.8`` and ``0.94``.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value)
    if isinstance(value, Integral):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    value = float(value)
    if value != value:  # NaN
        return "–"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 10.0**-digits):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def table_figure(
    frame,
    title: str | None = None,
    *,
    digits: int = 2,
    wrap: int = 22,
    fontsize: float = 9.0,
):
    """Render a DataFrame as a matplotlib table figure (for tables saved as PNG and PDF).

    Columns are as wide as their longest line (headers wrap at ``wrap`` characters), rows as
    tall as their most-wrapped cell, so nothing overprints or is clipped; numbers are
    formatted by :func:`format_cell` with ``digits`` decimals.
    """
    import matplotlib.pyplot as plt

    nrows, ncols = frame.shape
    headers = [textwrap.fill(str(c), wrap) for c in frame.columns]
    cells = [[format_cell(v, digits) for v in row] for row in frame.itertuples(index=False)]
    char_w = fontsize * 0.62 / 72  # inches per character of DejaVu Sans at this size
    line_h = fontsize * 1.45 / 72
    widths = []
    for j in range(ncols):
        lines = headers[j].splitlines() + [row[j] for row in cells]
        widths.append(max(len(line) for line in lines) * char_w + 0.3)
    header_h = (max(h.count("\n") for h in headers) + 1) * line_h + 0.12
    row_h = line_h + 0.12
    table_w, table_h = sum(widths), header_h + nrows * row_h
    title_h = 0.45 if title else 0.1
    fig_w, fig_h = table_w + 0.2, table_h + title_h + 0.1
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0.1 / fig_w, 0.05 / fig_h, table_w / fig_w, table_h / fig_h))
    ax.axis("off")
    table = ax.table(
        cellText=cells,
        colLabels=headers,
        cellLoc="center",
        colWidths=[w / table_w for w in widths],
        bbox=(0.0, 0.0, 1.0, 1.0),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(fontsize)
    for (row, col), cell in table.get_celld().items():
        cell.set_height(header_h / table_h if row == 0 else row_h / table_h)
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
        elif isinstance(frame.iat[row - 1, col], Real) and not isinstance(
            frame.iat[row - 1, col], bool
        ):
            cell.get_text().set_horizontalalignment("right")
            cell.PAD = 0.12 / widths[col]  # about 0.12 inch from the right edge
    if title:
        fig.suptitle(title, fontsize=fontsize + 2, y=1 - 0.05 / fig_h)
    return fig
