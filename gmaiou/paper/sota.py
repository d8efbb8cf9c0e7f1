"""Table 5's cited data: what other papers and official repositories report on COCO.

**Nothing here was measured by this package.** Every number is copied from the source
named in its row (a paper and its table, or a repository and its file), with the GPU its
speed was measured on. The paper's own Table 5 lost its numbers in the text extraction
(its extracted text, ``docs/spec.md`` section 5; only the method list, backbones and venues survive); for the
methods it lists, the values here are the ones their own papers or official repositories
report, looked up again. Where a number could not be found reliably it is ``None`` and
tables show "not found" — never a guess. Some rows come from a third party's table (the
source says so), and some from a split other than test-dev (the ``split`` field says so).

The paper's Table 5 has two blocks whose header cells were lost; the first starts with
YOLACT-700 (the slower methods), the second with YOLACT-550 (the real-time ones). ``block``
keeps that grouping. Reference markers (``[5]``, ``[51]``, ...) are the paper's.

Our own measurements (CPU fps at the paper's sizes, accuracy at CPU scale on synthetic
data) live elsewhere (:mod:`gmaiou.paper.benchmarks.train`, :mod:`gmaiou.paper.experiments.table5`)
and are never mixed into these rows.

:func:`write_sota_cited` writes the table under one stem, :data:`NAME`: ``table5_sota_cited.md``
(:func:`format_sota_table`), the table drawn without its notes (PNG and PDF) and its findings,
headed by :func:`sota_headline`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CITED_SOURCE",
    "METRICS",
    "NAME",
    "NOT_FOUND",
    "SOTA",
    "SOURCES",
    "CitedResult",
    "check_entries",
    "format_sota_table",
    "sota_findings",
    "sota_frame",
    "sota_headline",
    "write_sota_cited",
]

#: The stem of the outputs: ``table5_sota_cited.md``, ``.png``, ``.pdf``, ``_findings.md``.
NAME = "table5_sota_cited"
#: The stamp's data part: nothing here is measured.
CITED_SOURCE = "cited from the sources listed under the table; nothing measured here"
#: The venue of the reproduced paper's own rows (GmaYOLACT).
_OURS = "the paper"

NOT_FOUND = "not found"

#: Mask AP columns, in the order of COCO's summary.
METRICS: tuple[str, ...] = ("mask_ap", "ap50", "ap75", "aps", "apm", "apl")

#: Where the numbers come from: key -> (citation, address). Rows name one or more keys.
SOURCES: dict[str, tuple[str, str]] = {
    "yolact-readme": (
        "YOLACT / YOLACT++ official repository, README.md, 'Evaluation' tables (FPS on a "
        "Titan Xp, mAP on COCO test-dev), commit 902073d",
        "https://github.com/dbolya/yolact",
    ),
    "centermask-readme": (
        "CenterMask official repository (Lee & Park, CVPR 2020), README.md, 'coco test-dev "
        "results' table (mask AP/APs/APm/APl, time in ms, GPU per row), commit 72147e8",
        "https://github.com/youngwanLEE/CenterMask",
    ),
    "solo-readme": (
        "SOLO/SOLOv2 official repository, README.md: 'Light-weight models' table (AP on "
        "minival, testing time per image) and the highlights line (light-weight SOLOv2: "
        "31.3 FPS on a single V100, 37.1% AP), commit f4cd03b",
        "https://github.com/WXinlong/SOLO",
    ),
    "solov2-pwc": (
        "SOLOv2 (Wang et al., NeurIPS 2020), abstract ('31.3 FPS and 37.1% AP on COCO "
        "test-dev'); the model named SOLO-512 with AP50/AP75 from the paper as indexed by "
        "Papers with Code",
        "https://paperswithcode.com/paper/solov2-dynamic-faster-and-stronger",
    ),
    "sparseinst-readme": (
        "SparseInst official repository, README.md, 'Fast models' table (AP on COCO "
        "test-dev2017, FPS on one NVIDIA 2080Ti), commit 00211a2",
        "https://github.com/hustvl/SparseInst",
    ),
    "sparseinst-pwc": (
        "SparseInst (Cheng et al., CVPR 2022), comparison with real-time methods on COCO "
        "test-dev, as indexed by Papers with Code (SparseInst-448 and -608, ResNet-50-vd)",
        "https://paperswithcode.com/paper/sparse-instance-activation-for-real-time",
    ),
    "maiou-readme": (
        "maIoU official repository (Oksuz et al., BMVC 2021), README.md, 'maYOLACT Detector "
        "(on COCO test-dev)' table; the V100 and the maYOLACT-700 AP50-APL from the "
        "project's spec, docs/spec.md section 5",
        "https://github.com/kemaloksuz/Mask-aware-IoU",
    ),
    "maiou-pwc": (
        "maIoU (Oksuz et al., BMVC 2021), maYOLACT-550 AP50-APL and fps (Tesla V100) as "
        "indexed by Papers with Code",
        "https://paperswithcode.com/paper/mask-aware-iou-for-anchor-assignment-in-real",
    ),
    "gmaiou-paper": (
        "the reproduced paper (Cam et al., GmaIoU), text of sections 4.3-4.4 and the "
        "abstract as given in docs/spec.md section 5 (its tables lost their numbers)",
        "https://arxiv.org/abs/2312.17031",
    ),
}


@dataclass(frozen=True)
class CitedResult:
    """One row of Table 5 as another source reports it (mask AP in percent).

    Attributes:
        method: the method as the paper's Table 5 names it.
        backbone: as in the paper's Table 5.
        venue: as in the paper's Table 5 (``Preprint``, ``ICCV 19``, ...).
        block: 1 for the paper's first block (YOLACT-700 to TensorMask), 2 for the second.
        ref: the paper's reference marker for the row (``[5]``, ``[51]``; ``""`` for its own).
        split: the COCO split of the AP columns (``test-dev`` or ``minival``); ``None``
            when no AP was found.
        mask_ap, ap50, ap75, aps, apm, apl: mask AP and its COCO breakdown; ``None`` when
            the source does not give it.
        fps: frames per second as the source reports it.
        ms_per_image: time per image, where the source gives that instead of fps.
        gpu: the GPU of ``fps`` / ``ms_per_image``; ``None`` when the source does not say.
        sources: keys of :data:`SOURCES` the numbers come from (none for a row with no number).
        note: what is not found, or how the row was matched to its source.
    """

    method: str
    backbone: str
    venue: str
    block: int
    ref: str
    split: str | None = None
    mask_ap: float | None = None
    ap50: float | None = None
    ap75: float | None = None
    aps: float | None = None
    apm: float | None = None
    apl: float | None = None
    fps: float | None = None
    ms_per_image: float | None = None
    gpu: str | None = None
    sources: tuple[str, ...] = ()
    note: str = ""

    @property
    def speed(self) -> float | None:
        """fps as reported, else ``1000 / ms_per_image``; ``None`` when neither was found."""
        if self.fps is not None:
            return self.fps
        if self.ms_per_image is not None:
            return 1000.0 / self.ms_per_image
        return None

    @property
    def has_numbers(self) -> bool:
        return any(getattr(self, m) is not None for m in METRICS) or self.speed is not None


def check_entries(entries: Iterable[CitedResult]) -> None:
    """Raise ``ValueError`` naming the first row that breaks the table's rules.

    Rules: method, backbone and venue are set; block is 1 or 2; AP values lie in
    (0, 100); a row with an AP names its split (``test-dev`` or ``minival``); a speed is
    positive and names its GPU unless the note says the GPU is not stated; fps and
    ms per image are not both given; a row with a number names at least one known
    source; a row without a number says "not found" in its note.
    """
    seen = set()
    for e in entries:
        where = f"Table 5 row {e.method!r} ({e.backbone})"
        if not (e.method and e.backbone and e.venue):
            raise ValueError(f"{where}: method, backbone and venue must be set")
        if (e.method, e.backbone) in seen:
            raise ValueError(f"{where}: listed twice")
        seen.add((e.method, e.backbone))
        if e.block not in (1, 2):
            raise ValueError(f"{where}: block must be 1 or 2, got {e.block}")
        for m in METRICS:
            v = getattr(e, m)
            if v is not None and not (isinstance(v, int | float) and 0 < v < 100):
                raise ValueError(f"{where}: {m} must be in (0, 100), got {v!r}")
        has_ap = any(getattr(e, m) is not None for m in METRICS)
        if has_ap and e.split not in ("test-dev", "minival"):
            raise ValueError(
                f"{where}: an AP needs its split (test-dev or minival), got {e.split!r}"
            )
        if not has_ap and e.split is not None:
            raise ValueError(f"{where}: a split without any AP")
        if e.fps is not None and e.ms_per_image is not None:
            raise ValueError(f"{where}: give fps or ms_per_image, not both")
        for name in ("fps", "ms_per_image"):
            v = getattr(e, name)
            if v is not None and not (isinstance(v, int | float) and v > 0 and math.isfinite(v)):
                raise ValueError(f"{where}: {name} must be positive, got {v!r}")
        if e.speed is not None and not e.gpu and "gpu not stated" not in e.note.lower():
            raise ValueError(f"{where}: a speed needs its GPU (or a note 'GPU not stated')")
        unknown = [s for s in e.sources if s not in SOURCES]
        if unknown:
            raise ValueError(f"{where}: unknown source(s) {', '.join(unknown)}")
        if e.has_numbers and not e.sources:
            raise ValueError(f"{where}: numbers without a source")
        if not e.has_numbers and NOT_FOUND not in e.note:
            raise ValueError(f"{where}: a row without numbers must say '{NOT_FOUND}' in its note")


#: The paper's Table 5 rows, in its order, with the numbers their sources report.
SOTA: tuple[CitedResult, ...] = (
    # Block 1 (the paper's first block, starting with YOLACT-700).
    CitedResult(
        "YOLACT-700", "ResNet-101", "ICCV 19", 1, "[5]", "test-dev", mask_ap=31.2,
        fps=23.6, gpu="Titan Xp", sources=("yolact-readme",),
    ),
    CitedResult(
        "PolarMask", "ResNet-101", "CVPR 20", 1, "[22]",
        note=f"{NOT_FOUND}: the official repository (xieenze/PolarMask) reports minival only, "
        "with no fps for ResNet-101; the paper's test-dev table could not be read here, and "
        "secondary indexes disagree between paper versions",
    ),
    CitedResult(
        "PolarMask++", "ResNet-101", "TPAMI 21", 1, "[23]", fps=14.0,
        sources=("gmaiou-paper",),
        note=f"mask AP {NOT_FOUND}. The 14 fps is the reproduced paper's own citation "
        "(section 4.4, comparing on an RTX 2080Ti); GPU not stated for this number",
    ),
    CitedResult(
        "RetinaMask", "ResNet-101", "Preprint", 1, "[12]", "test-dev", mask_ap=34.7,
        aps=14.3, apm=36.7, apl=50.5, ms_per_image=98.0, gpu="V100",
        sources=("centermask-readme",),
        note="a third party's table (CenterMask); RetinaMask's own README gives 36.6 mask AP "
        "for ResNet-101-FPN at 0.160 s/image on a 1080Ti without naming the split",
    ),
    CitedResult(
        "Mask R-CNN", "ResNet-50", "ICCV 17", 1, "[50]",
        note=f"{NOT_FOUND}: the paper takes this row from TensorMask [50], whose table could "
        "not be read here; CenterMask's README gives only ResNet-101 on test-dev",
    ),
    CitedResult(
        "TensorMask", "ResNet-101", "ICCV 19", 1, "[50]", "test-dev", mask_ap=37.1,
        aps=17.4, apm=39.1, apl=51.6, ms_per_image=380.0, gpu="V100",
        sources=("centermask-readme",),
        note="a third party's table (CenterMask), 72-epoch (6x) TensorMask",
    ),
    # Block 2 (the paper's second block, starting with YOLACT-550).
    CitedResult(
        "YOLACT-550", "ResNet-50", "ICCV 19", 2, "[5]", "test-dev", mask_ap=28.2,
        fps=42.5, gpu="Titan Xp", sources=("yolact-readme",),
    ),
    CitedResult(
        "YOLACT-550∗", "ResNet-50", "Baseline", 2, "",
        note=f"{NOT_FOUND}: the reproduced paper's own mmdetection baseline; its numbers were "
        "lost from the text",
    ),
    CitedResult(
        "Solov2-448", "ResNet-50", "NeurIPS 20", 2, "[26]",
        note=f"{NOT_FOUND}: the SOLOv2 paper's table for the 448 model could not be read here",
    ),
    CitedResult(
        "Solov2-448†", "ResNet-50", "NeurIPS 20", 2, "[51]", "minival", mask_ap=33.7,
        ms_per_image=24.0, sources=("solo-readme",),
        note="the repository's SOLOv2_Light_448_R50_3x (multi-scale training); minival, not "
        "test-dev; GPU not stated in that table",
    ),
    CitedResult(
        "YOLACT-550++", "ResNet-50", "TPAMI 20", 2, "[8]", "test-dev", mask_ap=34.1,
        fps=33.5, gpu="Titan Xp", sources=("yolact-readme",),
    ),
    CitedResult(
        "YOLACT-550++", "ResNet-101", "TPAMI 20", 2, "[8]", "test-dev", mask_ap=34.6,
        fps=27.3, gpu="Titan Xp", sources=("yolact-readme",),
    ),
    CitedResult(
        "CenterMask-Lite†", "VoVNetV2-39", "CVPR 20", 2, "[52]", "test-dev", mask_ap=36.3,
        aps=15.6, apm=38.1, apl=53.1, ms_per_image=28.0, gpu="Titan Xp",
        sources=("centermask-readme",),
        note="the repository's 48-epoch V2-39-FPN model (multi-scale training)",
    ),
    CitedResult(
        "CenterMask-Lite", "VoVNetV2-39", "CVPR 20", 2, "[53]",
        note=f"{NOT_FOUND}: the CenterMask abstract gives CenterMask-Lite 33.4 mask AP at over "
        "35 fps on a Titan Xp without naming the backbone, so it is not placed in this row",
    ),
    CitedResult(
        "Solov2-512†", "ResNet-50", "NeurIPS 20", 2, "[51]", "minival", mask_ap=36.4,
        ms_per_image=34.0, sources=("solo-readme",),
        note="the repository's SOLOv2_Light_512_DCN_R50_3x; minival, not test-dev; GPU not "
        "stated in that table",
    ),
    CitedResult(
        "Solov2-512", "ResNet-50", "NeurIPS 20", 2, "[26]", "test-dev", mask_ap=37.1,
        ap50=57.7, ap75=39.7, fps=31.3, gpu="V100", sources=("solo-readme", "solov2-pwc"),
        note="the light-weight SOLOv2 of the abstract and README, named SOLO-512 where "
        "indexed",
    ),
    CitedResult(
        "SparseInst-448", "R-50-d-DCN", "CVPR 22", 2, "[54]", "test-dev", mask_ap=35.9,
        ap50=56.5, ap75=37.7, aps=12.3, apm=37.1, apl=57.0, fps=58.5, gpu="RTX 2080Ti",
        sources=("sparseinst-pwc",),
        note="the official README has no 448 row; numbers from the paper as indexed",
    ),
    CitedResult(
        "SparseInst-608", "R-50-d-DCN", "CVPR 22", 2, "[54]", "test-dev", mask_ap=37.9,
        ap50=59.2, ap75=40.2, aps=15.7, apm=39.4, apl=56.9, fps=40.0, gpu="RTX 2080Ti",
        sources=("sparseinst-readme", "sparseinst-pwc"),
        note="README: G-IAM, R-50-vd-DCN, 608, with augmentation; AP50-APL as indexed",
    ),
    CitedResult(
        "maYOLACT-550", "ResNet-50", "BMVC 21", 2, "[14]", "test-dev", mask_ap=35.2,
        ap50=56.2, ap75=37.1, aps=14.7, apm=38.0, apl=51.4, fps=30.0, gpu="V100",
        sources=("maiou-readme", "maiou-pwc"),
    ),
    CitedResult(
        "maYOLACT-700", "ResNet-50", "BMVC 21", 2, "[14]", "test-dev", mask_ap=37.7,
        ap50=59.4, ap75=39.9, aps=18.1, apm=40.8, apl=52.5, fps=25.0, gpu="V100",
        sources=("maiou-readme",),
    ),
    CitedResult(
        "GmaYOLACT-550 (Ours)", "ResNet-50", "the paper", 2, "", fps=28.0, gpu="RTX 2080Ti",
        sources=("gmaiou-paper",),
        note=f"mask AP {NOT_FOUND} (lost from the text); 28 fps from section 4.3",
    ),
    CitedResult(
        "GmaYOLACT-700 (Ours)", "ResNet-50", "the paper", 2, "", fps=25.0, gpu="RTX 2080Ti",
        sources=("gmaiou-paper",),
        note=f"mask AP {NOT_FOUND} (lost from the text); 25 fps from section 4.4",
    ),
    CitedResult(
        "GmaYOLACT, best model (abstract)", "ResNet-50", "the paper", 2, "", "test-dev",
        mask_ap=38.7, fps=26.0, sources=("gmaiou-paper",),
        note="the abstract does not name the model's size (Table 5 lists GmaYOLACT with "
        "ResNet-50 only); GPU not stated there (section 4.4 gives GmaYOLACT-700 at 25 fps on "
        "an RTX 2080Ti)",
    ),
)  # fmt: skip

check_entries(SOTA)


def _cell(value: float | None, missing: str = "–") -> str:
    return missing if value is None else f"{value:.1f}"


def sota_frame(entries: Sequence[CitedResult] = SOTA):
    """One row per entry: the paper's columns; ``not found`` for a mask AP or fps that was
    not found, ``–`` for a breakdown column the row's source does not give.

    The ``fps`` column is the source's fps, or ``1000 / ms`` marked ``(from N ms)`` where the
    source gives a time per image.
    """
    import pandas as pd

    keys = list(SOURCES)
    rows = []
    for e in entries:
        if e.fps is not None:
            speed = f"{e.fps:g}"
        elif e.ms_per_image is not None:
            speed = f"{1000.0 / e.ms_per_image:.1f} (from {e.ms_per_image:g} ms)"
        else:
            speed = NOT_FOUND
        rows.append(
            {
                "block": e.block,
                "method": f"{e.method} {e.ref}".strip(),
                "backbone": e.backbone,
                "venue": e.venue,
                "split": e.split or "–",
                "mask AP": _cell(e.mask_ap, NOT_FOUND),
                "AP50": _cell(e.ap50),
                "AP75": _cell(e.ap75),
                "APs": _cell(e.aps),
                "APm": _cell(e.apm),
                "APl": _cell(e.apl),
                "fps": speed,
                "GPU": e.gpu or ("not stated" if e.speed is not None else "–"),
                "sources": ", ".join(f"[S{keys.index(s) + 1}]" for s in e.sources) or "–",
                "note": e.note,
            }
        )
    return pd.DataFrame(rows)


def format_sota_table(entries: Sequence[CitedResult] = SOTA) -> str:
    """Markdown: the cited table, then the numbered list of its sources."""
    frame = sota_frame(entries)
    used = {s for e in entries for s in e.sources}
    lines = [
        "**Cited, not measured here**: what each row's source reports on COCO (the `split` "
        "column; mask AP in %), fps on the GPU named; `–`: not given by the row's source. "
        "Different GPUs: fps are not comparable across rows.",
        "",
        frame.to_markdown(index=False),
        "",
        "Sources:",
        "",
    ]
    for i, (key, (citation, url)) in enumerate(SOURCES.items(), start=1):
        if key in used:
            lines.append(f"- [S{i}] {citation}: {url}")
    return "\n".join(lines)


def _name(e: CitedResult, entries: Sequence[CitedResult]) -> str:
    """The row's method, with its backbone where another row has the same method."""
    twins = sum(o.method == e.method for o in entries)
    return f"{e.method} ({e.backbone})" if twins > 1 else e.method


def _best(rows: Sequence[CitedResult]) -> CitedResult | None:
    """The row with the highest mask AP (the first among equals), ``None`` for no row."""
    rows = [e for e in rows if e.mask_ap is not None]
    return max(rows, key=lambda e: e.mask_ap) if rows else None


def sota_headline(entries: Sequence[CitedResult] = SOTA) -> str:
    """The reproduced paper's best cited test-dev mask AP against the best other cited test-dev
    row, in one sentence (counts of the rows where the paper gives none)."""
    test_dev = [e for e in entries if e.split == "test-dev"]
    ours = _best([e for e in test_dev if e.venue == _OURS])
    other = _best([e for e in test_dev if e.venue != _OURS])
    if ours is None or other is None:
        found = sum(e.mask_ap is not None for e in entries)
        return f"Cited, not measured: {found} of {len(entries)} rows give a COCO mask AP"
    return (
        f"Cited, not measured: GmaYOLACT {ours.mask_ap:.1f} test-dev mask AP (abstract), "
        f"the best other row {other.mask_ap:.1f} ({_name(other, entries)})"
    )


def sota_findings(entries: Sequence[CitedResult] = SOTA) -> list[str]:
    """Sentences computed from the cited rows: how many give an AP (and on which split) and a
    speed, the range of the test-dev mask AP, the reproduced paper's rows against the others,
    the GPUs of the fps, and the rows not found."""
    with_ap = [e for e in entries if e.mask_ap is not None]
    splits = {s: sum(e.split == s for e in with_ap) for s in ("test-dev", "minival")}
    with_speed = [e for e in entries if e.speed is not None]
    empty = [e for e in entries if not e.has_numbers]
    lines = [
        f"{len(entries)} rows, cited and not measured here: {len(with_ap)} give a COCO mask AP "
        f"({splits['test-dev']} on test-dev, {splits['minival']} on minival), {len(with_speed)} "
        f"an fps, and {len(empty)} neither (not found)."
    ]
    test_dev = [e for e in with_ap if e.split == "test-dev"]
    if test_dev:
        low = min(test_dev, key=lambda e: e.mask_ap)
        high = _best(test_dev)
        lines.append(
            f"On test-dev the cited mask AP runs from {low.mask_ap:.1f} ({_name(low, entries)}) "
            f"to {high.mask_ap:.1f} ({_name(high, entries)})."
        )
    ours = _best([e for e in test_dev if e.venue == _OURS])
    other = _best([e for e in test_dev if e.venue != _OURS])
    if ours is not None and other is not None:
        lines.append(
            f"The reproduced paper's best test-dev mask AP, {ours.mask_ap:.1f} "
            f"({_name(ours, entries)}), is {ours.mask_ap - other.mask_ap:+.1f} against the best "
            f"other cited row, {other.mask_ap:.1f} ({_name(other, entries)}), each as its source "
            "reports it."
        )
    gpus = sorted({e.gpu for e in with_speed if e.gpu})
    unnamed = sum(e.gpu is None for e in with_speed)
    if with_speed:
        lines.append(
            f"Of the {len(with_speed)} fps, {len(with_speed) - unnamed} were measured on "
            f"{len(gpus)} different GPU{'s' if len(gpus) != 1 else ''} ({', '.join(gpus)}) and "
            f"{unnamed} on a GPU its source does not name, so they are not comparable across rows."
        )
    if empty:
        lines.append(
            "Not found: " + ", ".join(_name(e, entries) for e in empty) + " (see each row's note)."
        )
    return lines


def write_sota_cited(profile: str = "default", entries: Sequence[CitedResult] = SOTA) -> list:
    """Write :data:`NAME`: the table with its sources (Markdown), the table drawn without the
    notes (PNG and PDF) and the findings with their headline. Returns the paths."""
    import matplotlib.pyplot as plt

    from gmaiou.paper.figures import save_figure, save_findings, save_table, table_figure

    paths = [save_table(format_sota_table(entries), NAME, profile, source=CITED_SOURCE)]
    drawn = sota_frame(entries).drop(columns=["note"])
    fig = table_figure(
        drawn,
        "Table 5, cited (not measured here): COCO mask AP and fps as each source reports them",
        wrap=12,
        fontsize=8.0,
    )
    paths += save_figure(fig, NAME, profile, source=CITED_SOURCE)
    plt.close(fig)
    paths.append(
        save_findings(
            sota_findings(entries),
            NAME,
            profile,
            source=CITED_SOURCE,
            headline=sota_headline(entries),
        )
    )
    return paths
