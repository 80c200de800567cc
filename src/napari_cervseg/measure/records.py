"""One typed record per found cell, and the one flat row (table, CSV, Parquet, napari features) made
of it: as scikit-image gives a region one object (``regionprops``) and one table
(``regionprops_table``).

Every column name a cell's verdict is written under is defined here once, with the one rule for
ordering cells by suspicion and the one text for a withheld verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: column names of a cell's row (the descriptors follow under :func:`~napari_cervseg.measure` names)
CELL_ID = "cell_id"
BBOX = "bbox"
CENTROID = "centroid"
PREDICTED_CLASS = "predicted_class"
PROBABILITY = "probability"
P_ABNORMAL = "p_abnormal"
EXPLAINED_CLASS = "explained_class"
JUDGEABLE = "judgeable"
NOT_JUDGEABLE = "not_judgeable"
WARNINGS = "warnings"
#: descriptors.csv's column for the reasons a verdict is withheld (the table's ``not_judgeable`` text)
NOT_JUDGEABLE_REASON = "not_judgeable_reason"
#: what a cell given no class is shown as (the classifier cannot judge it, or it holds several cells)
NO_VERDICT = "no verdict"
#: the columns of a row that are not descriptors, in the row's order
RECORD_COLUMNS = (CELL_ID, BBOX, CENTROID, PREDICTED_CLASS, PROBABILITY, P_ABNORMAL, EXPLAINED_CLASS, JUDGEABLE,
                  NOT_JUDGEABLE, WARNINGS)


def reasons_text(reasons: Iterable[str]) -> str:
    """The reasons a verdict is withheld as the one text a table holds ("" when none)."""
    return ", ".join(r for r in reasons if r)


def reasons_list(text) -> list[str]:
    """A table's reason text (or a list) back as the list of reasons."""
    if not text:
        return []
    if isinstance(text, str):
        return [r.strip() for r in text.split(", ") if r.strip()]
    return [str(r) for r in text]


@dataclass
class CellRecord:
    """One found cell: where it is, what the classifier said of it and what was measured on it alone.

    Attributes
    ----------
    cell_id : int
        Its id in the instance labels.
    bbox : (row0, col0, row1, col1)
        Its extent's box in the image's pixels.
    centroid : (row, col)
    descriptors : dict
        :func:`~napari_cervseg.measure` of that cell alone (areas, N/C ratio, shape, colour).
    predicted_class : str or None
        None when no verdict is given (``judgeable`` False).
    probability : float or None
        Of the predicted class.
    p_abnormal : float or None
        The network's p(abnormal), kept when the verdict is withheld (ordering by suspicion).
    explained_class : str or None
        The class the cell's heatmap explains.
    judgeable : bool
    not_judgeable : list of str
        Why no verdict (the applicability checks that failed, a bare nucleus, several nuclei).
    warnings : list of str
    """

    cell_id: int
    bbox: tuple
    centroid: tuple
    descriptors: dict = field(default_factory=dict)
    predicted_class: str | None = None
    probability: float | None = None
    p_abnormal: float | None = None
    explained_class: str | None = None
    judgeable: bool = True
    not_judgeable: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def withhold(self, reason: str, warning: str | None = None) -> None:
        """Give this cell no class, saying why (p(abnormal) stays, for ordering and review)."""
        self.predicted_class = self.probability = None
        self.judgeable = False
        self.not_judgeable.append(reason)
        if warning:
            self.warnings.append(warning)

    @property
    def verdict(self) -> str:
        """``"abnormal"``, ``"normal"`` or ``"no verdict"``."""
        return self.predicted_class or NO_VERDICT

    @property
    def suspicion(self) -> float:
        """p(abnormal), or -1 for a cell without one (it sorts last)."""
        return -1.0 if self.p_abnormal is None else float(self.p_abnormal)

    def row(self) -> dict:
        """The flat row of the table: the record's columns, then the descriptors."""
        return {CELL_ID: self.cell_id, BBOX: tuple(self.bbox), CENTROID: tuple(self.centroid), **self.descriptors,
                PREDICTED_CLASS: self.predicted_class, PROBABILITY: self.probability, P_ABNORMAL: self.p_abnormal,
                EXPLAINED_CLASS: self.explained_class, JUDGEABLE: self.judgeable,
                NOT_JUDGEABLE: reasons_text(self.not_judgeable), WARNINGS: list(self.warnings)}

    @classmethod
    def from_row(cls, row: Mapping) -> CellRecord:
        """A record from a row of the table (a CSV's, a napari layer's features): the inverse of :meth:`row`."""
        descriptors = {k: v for k, v in row.items() if k not in RECORD_COLUMNS}
        return cls(cell_id=int(row[CELL_ID]), bbox=tuple(row.get(BBOX) or ()), centroid=tuple(row.get(CENTROID) or ()),
                   descriptors=descriptors, predicted_class=row.get(PREDICTED_CLASS) or None,
                   probability=row.get(PROBABILITY), p_abnormal=row.get(P_ABNORMAL),
                   explained_class=row.get(EXPLAINED_CLASS), judgeable=bool(row.get(JUDGEABLE, True)),
                   not_judgeable=reasons_list(row.get(NOT_JUDGEABLE)), warnings=list(row.get(WARNINGS) or []))


def _p_abnormal(item) -> float | None:
    value = item.get(P_ABNORMAL) if isinstance(item, Mapping) else item.p_abnormal
    try:
        return None if value is None or value != value else float(value)  # NaN (a CSV's empty cell) is none
    except (TypeError, ValueError):
        return None


def by_suspicion(items: Sequence) -> list:
    """Records or rows from the most to the least suspicious: by p(abnormal), those without one
    last, ties in id order. The one ordering every list of cells uses (tables, boxes, review)."""
    def key(item):
        p = _p_abnormal(item)
        cell_id = item.get(CELL_ID, 0) if isinstance(item, Mapping) else item.cell_id
        return (p is None, -(p or 0.0), cell_id)

    return sorted(items, key=key)


def verdict_of(item) -> str:
    """``"abnormal"``, ``"normal"`` or ``"no verdict"`` of a record or a row."""
    cls = item.get(PREDICTED_CLASS) if isinstance(item, Mapping) else item.predicted_class
    return cls or NO_VERDICT
