"""Figure and table output: the profile/data stamp, number formatting, tables whose text fits."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest

from gmaiou.paper.figures import format_cell, provenance, save_figure, save_table, table_figure

matplotlib.use("Agg")


@pytest.fixture
def figures(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    return tmp_path


def test_provenance_line():
    assert provenance("smoke") == "profile: smoke"
    assert provenance("default", "coco-sample val2017") == (
        "profile: default · data: coco-sample val2017"
    )
    with pytest.raises(ValueError, match="profile"):
        provenance("")


def test_save_figure_stamps_profile_and_data(figures):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = save_figure(fig, "f", "smoke", source="synthetic (8 images)")
    assert [p.name for p in paths] == ["f.png", "f.pdf"] and all(p.is_file() for p in paths)
    assert paths[0].parent == figures / "smoke"  # the smoke profile never overwrites the default
    assert "profile: smoke · data: synthetic (8 images)" in [t.get_text() for t in fig.texts]
    plt.close(fig)


def test_save_table_ends_with_the_stamp(figures):
    path = save_table(pd.DataFrame({"a": [1, 2]}), "t", "default", source="paper")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("| ") and lines[-1] == "*profile: default · data: paper*"
    assert save_table("| x |\n|---|\n", "u").read_text() == "| x |\n|---|\n\n*profile: default*\n"


def test_format_cell_hand_values():
    assert [format_cell(v) for v in (205.0, 0.8, 0.94, 3, 12345, "coco")] == [
        "205.00",
        "0.80",
        "0.94",
        "3",
        "12,345",
        "coco",
    ]
    assert format_cell(1390.0, 1) == "1390.0"
    assert format_cell(0.0001) == "1.00e-04" and format_cell(0.0) == "0.00"
    assert format_cell(float("nan")) == "–" and format_cell(True) == "True"


def test_table_text_fits_its_cells():
    """No header or cell overprints its neighbour or is clipped (the Table 4 ratio defect)."""
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(
        {
            "dataset": ["coco", "synthetic"],
            "size": [400, 550],
            "full-image / Alg. 1": [9.81, 15.75],
            "ATSS GmaIoU / ATSS IoU": [1.57, 1.5],
            "ATSS GmaIoU (tables prepared) / ATSS IoU": [0.94, 0.8],
            "IoU variant": ["Generalized Mask-aware IoU (GmaIoU)", "IoU"],
        }
    )
    fig = table_figure(frame, "title")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    table = fig.axes[0].tables[0]
    cells = table.get_celld()
    assert len(cells) == 3 * 6
    for (row, col), cell in cells.items():
        box = cell.get_window_extent(renderer)
        text = cell.get_text().get_window_extent(renderer)
        assert box.x0 <= text.x0 and text.x1 <= box.x1, (row, col, cell.get_text().get_text())
        assert box.y0 <= text.y0 and text.y1 <= box.y1, (row, col, cell.get_text().get_text())
    assert (
        cells[1, 2].get_text().get_text() == "9.81" and cells[2, 3].get_text().get_text() == "1.50"
    )
    plt.close(fig)


def test_pixel_weights_figure_values_titles_and_legend():
    import matplotlib.pyplot as plt
    import torch

    from gmaiou.paper.analysis.measures import plot_pixel_weights
    from gmaiou.shapes import l_shape

    mask = torch.from_numpy(l_shape((16, 16), 2.0, 2.0, 12.0, 4.0))
    box = torch.tensor([2.0, 2.0, 14.0, 14.0])
    anchors = torch.tensor([[2.0, 2.0, 8.0, 14.0], [8.0, 2.0, 14.0, 14.0]])
    fig, values = plot_pixel_weights(mask, box, anchors, ("on the arm", "on the corner"))
    # two halves of the box: the same IoU, different mask-aware values
    assert values["IoU"].tolist() == pytest.approx([0.5, 0.5])
    assert values["GmaIoU (P = M)"][0] > values["GmaIoU (P = M)"][1]
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles[0] == "IoU pixel weights\nIoU of orange anchor 0.50, red 0.50"
    colorbar_labels = [ax.get_ylabel() for ax in fig.axes[3:]]
    assert colorbar_labels == ["weight of a pixel in the intersection"] * 3
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "GT mask outline",
        "GT box",
        "orange anchor: on the arm",
        "red anchor: on the corner",
    ]
    with pytest.raises(ValueError, match="two anchors"):
        plot_pixel_weights(mask, box, anchors[:1], ("a", "b"))
    plt.close("all")


def test_mob_distribution_has_a_title_and_a_legend_for_every_colour():
    import matplotlib.pyplot as plt
    import numpy as np

    from gmaiou.paper.analysis.mob import plot_mob_distribution

    fig = plot_mob_distribution(
        {"a": np.array([0.2, 0.9]), "b": np.array([0.6])}, title="Fig. 3(a): a, b"
    )
    assert fig._suptitle.get_text() == "Fig. 3(a): a, b"
    hist, cdf = fig.axes
    assert [t.get_text() for t in hist.get_legend().get_texts()] == ["a", "b", "MOB = 0.5"]
    assert [t.get_text() for t in cdf.get_legend().get_texts()] == [
        "a (n=2, 50.0% < 0.5)",
        "b (n=1, 0.0% < 0.5)",
        "MOB = 0.5",
        "share below 0.5",
    ]
    plt.close(fig)
