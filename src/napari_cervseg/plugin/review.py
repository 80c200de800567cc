"""napari dock widget: Review suspicious cells of a slide run.

Opens the folder a slide run wrote (``cervseg slide`` / :func:`segment_slide`), lists its cells
from the most to the least suspicious with their gallery thumbnails, and jumps the multiscale view
to each; the reviewer confirms or rejects each verdict, which is stored at once in the run's
``reviews.json`` and the table's ``review`` column (:func:`record_review`, usable without napari).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, Container, FileEdit, Label, PushButton

from ..measure.records import P_ABNORMAL, by_suspicion, verdict_of
from .work import _notify_error

if TYPE_CHECKING:
    import napari

#: how much of the view a reviewed cell fills
CELL_VIEW_FRACTION = 0.5
#: the canvas size the zoom is set for (px; a larger canvas shows more around the cell)
CANVAS_PX = 600
#: list entries shown (the rest are reached with Next)
MAX_LISTED = 500
DECISION_MARKS = {"confirmed": "✓ ", "rejected": "✗ ", "": ""}


def view_camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


class ReviewSlideWidget(Container):
    """Step through a slide run's cells by suspicion; confirm or reject each verdict."""

    def __init__(self, viewer: napari.viewer.Viewer):
        from qtpy.QtCore import QSize
        from qtpy.QtWidgets import QListWidget

        self.viewer = viewer
        self.folder_edit = FileEdit(label="slide run", mode="d",
                                    tooltip="the --out folder of `cervseg slide` (cells.parquet, gallery/)")
        self.open_button = PushButton(text="Open run")
        self.suspicious_only = CheckBox(text="abnormal and no-verdict cells only", value=True)
        self.previous_button = PushButton(text="◀ Previous")
        self.next_button = PushButton(text="Next ▶")
        self.confirm_button = PushButton(text="Confirm verdict")
        self.reject_button = PushButton(text="Reject verdict")
        self.status = Label(value="Open a slide run folder.")
        super().__init__(widgets=[self.folder_edit, self.open_button, self.suspicious_only,
                                  Container(widgets=[self.previous_button, self.next_button], layout="horizontal",
                                            labels=False),
                                  Container(widgets=[self.confirm_button, self.reject_button], layout="horizontal",
                                            labels=False),
                                  self.status])
        self.cell_list = QListWidget()
        self.cell_list.setIconSize(QSize(128, 64))
        self.native.layout().insertWidget(3, self.cell_list)
        self.out: Path | None = None
        self.rows: list[dict] = []
        self.index = -1
        self.open_button.changed.connect(lambda: self.open_run())
        self.suspicious_only.changed.connect(lambda: self.open_run() if self.out else None)
        self.previous_button.changed.connect(lambda: self.go(self.index - 1))
        self.next_button.changed.connect(lambda: self.go(self.index + 1))
        self.confirm_button.changed.connect(lambda: self.decide("confirmed"))
        self.reject_button.changed.connect(lambda: self.decide("rejected"))
        self.cell_list.currentRowChanged.connect(lambda row: self.go(row) if row != self.index else None)

    # --- opening a run --------------------------------------------------------------------------

    def open_run(self, folder=None) -> None:
        """Load the run in `folder` (default: the folder box), its slide and its cells."""
        from ..workflows.slide_outputs import read_table
        from ..workflows.slides import SlideRunError, run_card

        out = Path(folder if folder is not None else self.folder_edit.value)
        try:
            card = run_card(out)
            rows = read_table(out)
        except (SlideRunError, FileNotFoundError, OSError, ValueError) as exc:
            _notify_error(str(exc))
            self.status.value = str(exc)
            return
        if folder is not None:
            self.folder_edit.value = out
        self.out = out
        for row in rows:
            row.setdefault("verdict", verdict_of(row))
        if self.suspicious_only.value:
            rows = [r for r in rows if r.get("verdict") != "normal"]
        self.rows = by_suspicion(rows)
        self._show_slide(card)
        self._fill_list()
        self.index = -1
        self.go(0)

    def _show_slide(self, card: dict) -> None:
        import napari

        path = card.get("path")
        for layer in self.viewer.layers:
            if isinstance(layer, napari.layers.Image) and layer.metadata.get("cervseg_slide") == path:
                self.slide_layer = layer
                break
        else:
            from .reader import read_slide

            if not path or not Path(path).exists():
                self.slide_layer = None
                self.status.value = f"the slide {path} is not where the run found it; cells listed without it"
                return
            data, kwargs, _ = read_slide(path)[0]
            self.slide_layer = self.viewer.add_image(data, **kwargs)
        name = f"{self.out.name} cells"
        colours = {"abnormal": "red", "normal": "green", "no verdict": "gray"}
        coords = [(r["y"], r["x"]) for r in self.rows]
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        if coords:
            self.viewer.add_points(coords, name=name, size=40, face_color="transparent",
                                   border_color=[colours.get(r.get("verdict"), "gray") for r in self.rows],
                                   border_width=0.15, features={"cell_id": [r["cell_id"] for r in self.rows]})
        from ..workflows.slide_outputs import read_left_out
        from .layers import show_left_out

        show_left_out(self.viewer, f"{self.out.name} left out", read_left_out(self.out), size=30)

    def _describe(self, row: dict) -> str:
        p = row.get(P_ABNORMAL)
        mark = DECISION_MARKS.get(row.get("review") or "", "")
        return f"{mark}cell {row['cell_id']}: {row.get('verdict')}" + ("" if p is None else f", p {p:.2f}")

    def _fill_list(self) -> None:
        from qtpy.QtGui import QIcon, QPixmap
        from qtpy.QtWidgets import QListWidgetItem

        from ..workflows.slide_outputs import GALLERY

        self.cell_list.blockSignals(True)
        self.cell_list.clear()
        for row in self.rows[:MAX_LISTED]:
            item = QListWidgetItem(self._describe(row))
            thumb = self.out / GALLERY / f"cell_{row['cell_id']:06d}.png"
            if thumb.exists():
                item.setIcon(QIcon(QPixmap(str(thumb))))
            self.cell_list.addItem(item)
        self.cell_list.blockSignals(False)

    # --- moving and deciding ----------------------------------------------------------------------

    @property
    def current(self) -> dict | None:
        return self.rows[self.index] if 0 <= self.index < len(self.rows) else None

    def go(self, index: int) -> None:
        """Show cell `index` of the list: select it and centre the view on it."""
        if not self.rows:
            self.status.value = "no cells to review in this run"
            return
        self.index = max(0, min(len(self.rows) - 1, int(index)))
        row = self.rows[self.index]
        if self.index < self.cell_list.count():
            self.cell_list.blockSignals(True)
            self.cell_list.setCurrentRow(self.index)
            self.cell_list.blockSignals(False)
        size = max(row["bbox_y1"] - row["bbox_y0"], row["bbox_x1"] - row["bbox_x0"], 32)
        camera = view_camera(self.viewer)
        camera.center = (float(row["y"]), float(row["x"]))
        camera.zoom = CELL_VIEW_FRACTION * CANVAS_PX / size
        reviewed = sum(1 for r in self.rows if r.get("review"))
        self.status.value = (f"cell {self.index + 1} of {len(self.rows)} ({reviewed} reviewed): {self._describe(row)}"
                             + (f"; {row['not_judgeable']}" if row.get("not_judgeable") else ""))

    def decide(self, decision: str) -> None:
        """Store `decision` ('confirmed' / 'rejected') on the shown cell's verdict, then go on."""
        from ..workflows.slide_outputs import record_review

        row = self.current
        if row is None or self.out is None:
            return
        try:
            record_review(self.out, row["cell_id"], decision, verdict=row.get("verdict"))
        except (OSError, ValueError) as exc:
            _notify_error(f"could not store the review: {exc}")
            return
        row["review"] = decision
        if self.index < self.cell_list.count():
            self.cell_list.item(self.index).setText(self._describe(row))
        self.go(self.index + 1)
