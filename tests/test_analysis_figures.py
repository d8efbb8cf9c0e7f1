"""Figure and table output: the profile/data stamp, number formatting, tables whose text fits."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest

from gmaiou.figures import format_cell, provenance, save_figure, save_table, table_figure

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
