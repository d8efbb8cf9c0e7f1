"""The README's results at a glance: each claim of the paper beside the headline of the
findings file that tests it (:func:`gmaiou.paper.figures.read_headline`).

The claims are the paper's (typed here, with where the paper makes them); what we found is
never typed: each row's middle cell is the headline a notebook computed into a findings file.
``python -m gmaiou.paper.readme`` (``make readme``) writes ``figures/results_at_a_glance.md``
with :func:`write_glance` before it fills the README's include regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gmaiou.paper.figures import provenance, read_headline
from gmaiou.paper.paths import figures_dir

__all__ = ["CLAIMS", "GLANCE", "Claim", "glance_table", "glance_text", "write_glance"]

#: The file :func:`write_glance` writes, under the profile's figures folder.
GLANCE = "results_at_a_glance.md"


@dataclass(frozen=True)
class Claim:
    """One row: the paper's claim and the files under ``figures/`` that test it.

    ``findings``: the findings file whose headline is the row's result; ``evidence``:
    ``(label, file)`` links shown beside it (the findings file is always linked first).
    """

    paper: str
    findings: str
    evidence: tuple[tuple[str, str], ...] = ()


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "Many COCO boxes are mostly background (Obs. 2, Fig. 3(a))",
        "fig3a_mob_distribution_findings.md",
        (("figure", "fig3a_mob_distribution.png"),),
    ),
    Claim(
        "IoU-positive anchors can miss the mask (Fig. 1)",
        "fig1_examples_findings.md",
        (("figure", "fig1_examples.png"),),
    ),
    Claim(
        "GmaIoU is below IoU where the box is mostly empty (Fig. 4)",
        "fig4_iou_vs_gmaiou_findings.md",
        (("figure", "fig4_iou_vs_gmaiou.png"),),
    ),
    Claim(
        "IoU assignment: losses depend on the GT's MOB (Obs. 1, Fig. 2)",
        "fig2_loss_vs_mob_findings.md",
        (("figure", "fig2_loss_vs_mob.png"),),
    ),
    Claim(
        "ATSS-GmaIoU beats fixed IoU and other ATSS measures (Table 2)",
        "table2_assigners_findings.md",
        (("figure", "table2_assigners.png"),),
    ),
    Claim(
        "ATSS-GmaIoU beats ATSS-IoU by +1.0 to +1.5 mask AP (our pre-registered test)",
        "primary_test_findings.md",
        (("plan", "../docs/results.md"),),
    ),
    Claim(
        "The gain grows with the share of low-MOB objects",
        "mob_share_gain_findings.md",
        (("plan", "../docs/results.md"),),
    ),
    Claim(
        "Beyond the paper: GmaIoU in torchvision's Mask R-CNN (RPN and RoI heads)",
        "tv_maskrcnn_iou_vs_gmaiou_findings.md",
        (("docs", "../docs/torchvision.md"),),
    ),
    Claim(
        "GmaYOLACT gains about +7 mask AP over YOLACT (Table 3)",
        "table3_gmayolact_findings.md",
        (("figure", "table3_gmayolact.png"),),
    ),
    Claim(
        "Alg. 1 makes mask-aware assignment cheap (Table 4)",
        "timings/assignment_goals_findings.md",
        (("figure", "timings/assignment_goals.png"),),
    ),
    Claim(
        "ATSS's fewer anchors cut inference time (Table 4)",
        "timings/trained_inference_findings.md",
        (("figure", "timings/trained_inference.png"),),
    ),
    Claim(
        "GmaYOLACT is the best real-time model on COCO (Table 5)",
        "table5_cpu_accuracy_findings.md",
        (("cited", "table5_sota_cited.md"),),
    ),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def glance_table(folder: Path, claims: tuple[Claim, ...] = CLAIMS) -> str:
    """The Markdown table of ``claims`` with the headlines read from ``folder``.

    Links are relative to ``folder``. A row whose findings file is missing says so (its
    records are not complete yet); one whose findings file has no headline is an error.

    Raises:
        ValueError: a findings file exists without a headline.
    """
    rows = ["| paper's claim | what we found | evidence |", "|---|---|---|"]
    for claim in claims:
        path = folder / claim.findings
        if path.is_file():
            found = read_headline(path)
            if found is None:
                raise ValueError(f"{path} has no '**At a glance:**' headline")
        else:
            found = "no result yet: its runs are not recorded"
        links = [("findings", claim.findings)] * path.is_file() + list(claim.evidence)
        cells = ", ".join(f"[{label}]({target})" for label, target in links)
        rows.append(f"| {_cell(claim.paper)} | {_cell(found)} | {cells} |")
    return "\n".join(rows) + "\n"


def glance_text(profile: str = "default", folder: Path | None = None) -> str:
    """What :func:`write_glance` writes: :func:`glance_table` of the profile's figures folder
    (or ``folder``), then the stamp naming the findings files it read."""
    folder = figures_dir(profile) if folder is None else Path(folder)
    source = "the headlines of the findings files linked"
    return glance_table(folder) + f"\n*{provenance(profile, source)}*\n"


def write_glance(profile: str = "default", folder: Path | None = None) -> Path:
    """Write :func:`glance_text` as ``<figures of the profile>/results_at_a_glance.md``
    (or into ``folder``); an unchanged file is not rewritten."""
    folder = figures_dir(profile) if folder is None else Path(folder)
    text = glance_text(profile, folder)
    path = folder / GLANCE
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path
