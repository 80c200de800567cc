"""One typed record per cell, one row made of it, one ordering by suspicion (issue 24, item 2)."""

import math

import numpy as np
from synthetic import synthetic_field

from napari_cervseg import segment_field
from napari_cervseg.measure.records import NO_VERDICT, CellRecord, by_suspicion, reasons_list, verdict_of


def _record(cell_id, p, cls="normal"):
    return CellRecord(cell_id=cell_id, bbox=(0, 0, 10, 10), centroid=(5.0, 5.0), descriptors={"cell_area": 100},
                      predicted_class=cls, probability=None if p is None else max(p, 1 - p), p_abnormal=p)


def test_a_row_reads_back_as_the_same_record():
    record = _record(3, 0.7, "abnormal")
    record.withhold("several cells: 2 nuclei in one region", "review it")
    row = record.row()
    assert row["predicted_class"] is None and row["p_abnormal"] == 0.7  # kept for ordering and review
    assert row["not_judgeable"] == "several cells: 2 nuclei in one region" and row["judgeable"] is False
    assert CellRecord.from_row(row) == record
    assert verdict_of(row) == verdict_of(record) == record.verdict == NO_VERDICT


def test_cells_without_p_abnormal_sort_last_rows_and_records_alike():
    records = [_record(1, None), _record(2, 0.2), _record(3, 0.9), _record(4, 0.2), _record(5, math.nan)]
    order = [r.cell_id for r in by_suspicion(records)]
    assert order == [3, 2, 4, 1, 5]  # ties in id order, missing (None, NaN as a CSV reads it) last
    assert [r["cell_id"] for r in by_suspicion([r.row() for r in records])] == order
    assert reasons_list("too_small, no_contrast") == ["too_small", "no_contrast"] and reasons_list("") == []


def test_a_fields_table_is_its_records_rows():
    rgb, _, _ = synthetic_field()
    result = segment_field(rgb, model=None, method="colour-baseline", finder="classic")
    assert result.n_cells >= 2
    assert result.table == [r.row() for r in result.records]
    first = result.records[0]
    assert result.record(first.cell_id) is first
    box, mask = result.extent(first.cell_id)
    assert tuple(box) == tuple(first.bbox) and mask.sum() == first.descriptors["cell_area"]
    assert np.all([r.predicted_class is None for r in result.records])  # no model: no verdict
    assert result.rows_by_suspicion() == [r.row() for r in by_suspicion(result.records)]
