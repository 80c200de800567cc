"""What a slide run leaves for the user: one table of every cell (Parquet and CSV), the cells'
outlines as GeoJSON that QuPath opens, a self-contained HTML report, a gallery of the most
suspicious cells, and the reviewer's decisions (kept in ``reviews.json``, never overwritten by a
later run, and copied into the table's ``review`` column).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io.images import to_rgb_uint8, write_text_atomic
from ..measure.records import (
    JUDGEABLE,
    NOT_JUDGEABLE,
    P_ABNORMAL,
    PREDICTED_CLASS,
    PROBABILITY,
    by_suspicion,
    verdict_of,
)
from ..segment import segment_cell

TABLE_PARQUET = "cells.parquet"
TABLE_CSV = "cells.csv"
GEOJSON = "cells.geojson"
REPORT = "report.html"
SUMMARY = "summary.json"
REVIEWS = "reviews.json"
GALLERY = "gallery"
REVIEW_DECISIONS = ("confirmed", "rejected")
#: what a run writes into its folder (a folder holding any of them without a run's card is refused)
OUTPUT_NAMES = (TABLE_PARQUET, TABLE_CSV, GEOJSON, REPORT, SUMMARY, REVIEWS, GALLERY)

#: the table's columns, in order (descriptors follow, as `measure` names them)
LEAD_COLUMNS = ("cell_id", "tile", "y", "x", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1", "verdict",
                PREDICTED_CLASS, P_ABNORMAL, PROBABILITY, JUDGEABLE, NOT_JUDGEABLE, "review", "notes")
#: QuPath classification colours (RGB)
CLASS_COLOURS = {"abnormal": (230, 20, 20), "normal": (40, 160, 60), "no verdict": (150, 150, 150)}


def class_counts(cells: list[dict]) -> dict:
    counts = {"n_abnormal": 0, "n_normal": 0, "n_no_verdict": 0}
    for cell in cells:
        counts["n_" + verdict_of(cell).replace(" ", "_")] += 1
    return counts


def table_rows(cells: list[dict], reviews: dict | None = None) -> list[dict]:
    """One flat row per cell (no outlines), with every column of LEAD_COLUMNS then the descriptors."""
    reviews = reviews or {}
    rows = []
    for cell in cells:
        y0, x0, y1, x1 = cell["bbox"]
        row = {"cell_id": cell["cell_id"], "tile": cell["tile"], "y": round(cell["y"], 1), "x": round(cell["x"], 1),
               "bbox_y0": y0, "bbox_x0": x0, "bbox_y1": y1, "bbox_x1": x1, "verdict": verdict_of(cell),
               PREDICTED_CLASS: cell.get(PREDICTED_CLASS), P_ABNORMAL: cell.get(P_ABNORMAL),
               "probability": cell.get("probability"), "judgeable": cell.get("judgeable"),
               "not_judgeable": cell.get("not_judgeable") or "",
               "review": (reviews.get(str(cell["cell_id"])) or {}).get("decision", ""), "notes": cell.get("notes", "")}
        skip = set(row) | {"outline", "nucleus_outline", "nucleus_centre", "bbox", "explained_class", "warnings"}
        row.update({k: v for k, v in cell.items() if k not in skip})
        rows.append(row)
    return rows


def _columns(rows: list[dict]) -> list[str]:
    columns = list(LEAD_COLUMNS)
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def _atomic(path: Path, write) -> None:
    """Binary outputs (Parquet, PNG) written by their library to a temporary name, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_table(out: Path, rows: list[dict]) -> None:
    """``cells.parquet`` and ``cells.csv``: the same rows and columns."""
    columns = _columns(rows)
    data = {c: [row.get(c) for row in rows] for c in columns}
    schema = []
    for c in columns:
        values = [v for v in data[c] if v is not None]
        if c in ("cell_id", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"):
            kind = pa.int64()
        elif values and all(isinstance(v, bool) for v in values):
            kind = pa.bool_()
        elif values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            kind = pa.float64()
        else:
            kind = pa.string()
            data[c] = [None if v is None else str(v) for v in data[c]]
        schema.append(pa.field(c, kind))
    table = pa.table(data, schema=pa.schema(schema))
    _atomic(out / TABLE_PARQUET, lambda p: pq.write_table(table, p))

    def write_csv(path: Path) -> None:
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows({c: ("" if row.get(c) is None else row.get(c)) for c in columns} for row in rows)

    _atomic(out / TABLE_CSV, write_csv)


def read_table(out) -> list[dict]:
    """The cell table a slide run wrote (Parquet), as one dict per row."""
    path = Path(out) / TABLE_PARQUET
    if not path.exists():
        raise FileNotFoundError(f"{path}: no cell table here; run `cervseg slide SLIDE --out {out}` first")
    return pq.read_table(path).to_pylist()


# --- GeoJSON (QuPath) -------------------------------------------------------------------------------

def _polygon(ring: list) -> dict:
    return {"type": "Polygon", "coordinates": [ring]}


#: QuPath class of the points marking nuclei the finder left out
LEFT_OUT_CLASS = {"name": "Left out", "color": [255, 165, 0]}


def geojson_features(cells: list[dict], left_out=()) -> dict:
    """A FeatureCollection of QuPath cell objects: the cell's outline as ``geometry``, its nucleus
    as ``nucleusGeometry``, the verdict as ``classification`` {name, color}, numbers as
    ``measurements``; and each left-out nucleus ([y, x]) as a point annotation of class "Left
    out". Coordinates are level-0 pixels (x, y)."""
    features = [{"type": "Feature", "id": f"cervseg-left-out-{i}",
                 "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
                 "properties": {"objectType": "annotation", "name": "left out: not counted as a cell",
                                "classification": dict(LEFT_OUT_CLASS)}}
                for i, (y, x) in enumerate(left_out, start=1)]
    for cell in cells:
        if len(cell.get("outline") or []) < 4:
            continue
        verdict = verdict_of(cell)
        measurements = {k: float(v) for k, v in cell.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None
                        and math.isfinite(float(v)) and k not in ("cell_id",)}
        feature = {"type": "Feature", "id": f"cervseg-cell-{cell['cell_id']}",
                   "geometry": _polygon(cell["outline"]),
                   "properties": {"objectType": "cell", "name": f"cell {cell['cell_id']}",
                                  "classification": {"name": verdict.capitalize() if verdict != "no verdict"
                                                     else "No verdict", "color": list(CLASS_COLOURS[verdict])},
                                  "measurements": measurements, "cell_id": cell["cell_id"],
                                  "not_judgeable": cell.get("not_judgeable") or ""}}
        if len(cell.get("nucleus_outline") or []) >= 4:
            feature["nucleusGeometry"] = _polygon(cell["nucleus_outline"])
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path, cells: list[dict], left_out=()) -> Path:
    path = Path(path)
    write_text_atomic(path, json.dumps(geojson_features(cells, left_out)))
    return path


def read_geojson(path) -> list[dict]:
    """Cells back from a GeoJSON file (ours or QuPath's export of it): cell_id, verdict, outline,
    nucleus_outline, measurements."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise ValueError(f"{path}: not a GeoJSON FeatureCollection")
    cells = []
    for feature in data.get("features", []):
        props = feature.get("properties", {})
        if props.get("objectType", "cell") != "cell":
            continue  # annotations (the left-out points) are not cells
        name = (props.get("classification") or {}).get("name", "No verdict").lower()
        cells.append({"cell_id": props.get("cell_id"), "verdict": name,
                      "outline": feature["geometry"]["coordinates"][0],
                      "nucleus_outline": (feature.get("nucleusGeometry") or {}).get("coordinates", [[]])[0],
                      "measurements": props.get("measurements", {})})
    return cells


def read_left_out(out) -> list[list[float]]:
    """The left-out nuclei ([y, x]) a finished run marked in its GeoJSON (none if it has none)."""
    path = Path(out) / GEOJSON
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return [[float(f["geometry"]["coordinates"][1]), float(f["geometry"]["coordinates"][0])]
            for f in data.get("features", []) if isinstance(f, dict)
            and (f.get("properties") or {}).get("classification", {}).get("name") == LEFT_OUT_CLASS["name"]
            and (f.get("geometry") or {}).get("type") == "Point"]


# --- reviews -------------------------------------------------------------------------------------

def read_reviews(out) -> dict:
    path = Path(out) / REVIEWS
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a cervseg reviews file (a JSON object of cell id -> decision)")
    return data


def record_review(out, cell_id: int, decision: str, verdict: str | None = None, note: str = "") -> dict:
    """Store a reviewer's decision on a cell's verdict ('confirmed' / 'rejected', or '' to clear
    it) in ``reviews.json`` and the table's ``review`` column. Returns every review so far."""
    out = Path(out)
    if decision not in REVIEW_DECISIONS + ("",):
        raise ValueError(f"decision {decision!r}: one of {', '.join(REVIEW_DECISIONS)} (or '' to clear)")
    reviews = read_reviews(out)
    if decision:
        reviews[str(int(cell_id))] = {"decision": decision, "verdict": verdict, "note": note,
                                      "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    else:
        reviews.pop(str(int(cell_id)), None)
    write_text_atomic(out / REVIEWS, json.dumps(reviews, indent=1))
    if (out / TABLE_PARQUET).exists():
        rows = read_table(out)
        for row in rows:
            row["review"] = (reviews.get(str(row["cell_id"])) or {}).get("decision", "")
        write_table(out, rows)
    return reviews


# --- gallery and report ------------------------------------------------------------------------------

def _png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return buf.tobytes() if ok else b""


def cell_thumbnail(slide, cell: dict, model, method: str, height: int = 128) -> np.ndarray:
    """The cell's crop beside its heatmap (why the classifier called it so), side by side."""
    y0, x0, y1, x1 = cell["bbox"]
    pad = int(0.1 * max(y1 - y0, x1 - x0)) + 4
    crop, _ = to_rgb_uint8(slide.read(y0 - pad, x0 - pad, y1 + pad, x1 + pad))
    heat = None
    try:
        heat = segment_cell(crop, model=model, method=method, max_pixels=None, warn_if_field=False).heatmap
    except (ValueError, RuntimeError):  # a crop the method cannot take: the thumbnail without heatmap
        heat = None
    if heat is None:
        overlay = crop
    else:
        colours = cv2.cvtColor(cv2.applyColorMap((255 * np.clip(heat, 0, 1)).astype(np.uint8), cv2.COLORMAP_JET),
                               cv2.COLOR_BGR2RGB)
        overlay = (0.55 * crop + 0.45 * colours).astype(np.uint8)
    pair = np.concatenate([crop, np.full((crop.shape[0], 4, 3), 255, np.uint8), overlay], 1)
    scale = height / pair.shape[0]
    return cv2.resize(pair, (max(1, int(pair.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)


def write_gallery(out: Path, slide, cells: list[dict], model, method: str, n: int) -> list[tuple[dict, Path]]:
    """Thumbnails (crop | heatmap) of the `n` most suspicious cells in ``gallery/``."""
    folder = out / GALLERY
    folder.mkdir(exist_ok=True)
    made = []
    for cell in by_suspicion(cells)[:n]:
        path = folder / f"cell_{cell['cell_id']:06d}.png"
        if not path.exists():
            _atomic(path, lambda p, c=cell: p.write_bytes(_png_bytes(cell_thumbnail(slide, c, model, method))))
        made.append((cell, path))
    return made


def _svg_histogram(values: list[float], bins: int = 20, width: int = 420, height: int = 160) -> str:
    counts, _ = np.histogram(values, bins=bins, range=(0, 1)) if values else (np.zeros(bins, int), None)
    top = max(1, int(counts.max()))
    bar = width / bins
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - 20 - (height - 30) * c / top:.1f}" width="{bar - 1:.1f}"'
        f' height="{(height - 30) * c / top:.1f}" fill="{"#e61414" if i >= bins // 2 else "#28a03c"}">'
        f"<title>{i / bins:.2f}-{(i + 1) / bins:.2f}: {c} cells</title></rect>" for i, c in enumerate(counts))
    axis = (f'<text x="0" y="{height - 4}" font-size="11">0</text><text x="{width / 2 - 8:.0f}" y="{height - 4}"'
            f' font-size="11">0.5</text><text x="{width - 14}" y="{height - 4}" font-size="11">1</text>')
    return f'<svg width="{width}" height="{height}" role="img" aria-label="p(abnormal) histogram">{rects}{axis}</svg>'


def _svg_scatter(cells: list[dict], width: int = 420, height: int = 260) -> str:
    points = [(c.get("nucleus_area"), c.get("nc_ratio"), verdict_of(c)) for c in cells]
    points = [(a, r, v) for a, r, v in points if isinstance(a, (int, float)) and isinstance(r, (int, float))
              and math.isfinite(a) and math.isfinite(r) and a > 0]
    if not points:
        return "<p>No cell with a nucleus and a cytoplasm to plot.</p>"
    xs = np.log10([a for a, _, _ in points])
    ys = np.array([r for _, r, _ in points])
    x0, x1 = float(xs.min()), float(xs.max()) + 1e-6
    y1 = float(np.percentile(ys, 99)) + 1e-6
    dots = "".join(
        f'<circle cx="{30 + (width - 40) * (x - x0) / (x1 - x0):.1f}" cy="{height - 25 - (height - 35) * min(y, y1) / y1:.1f}"'
        f' r="2.5" fill="rgb{CLASS_COLOURS[v]}" fill-opacity="0.7"/>' for x, y, (_, _, v) in zip(xs, ys, points, strict=True))
    labels = (f'<text x="30" y="{height - 5}" font-size="11">nucleus area (px, log) {10 ** x0:.0f} .. {10 ** x1:.0f}</text>'
              f'<text x="0" y="12" font-size="11">N/C up to {y1:.2f}</text>')
    return f'<svg width="{width}" height="{height}" role="img" aria-label="N/C against nucleus area">{dots}{labels}</svg>'


def write_report(path: Path, result, gallery: list[tuple[dict, Path]], config) -> Path:
    """A self-contained HTML page: counts per class, the p(abnormal) histogram, an N/C scatter and
    the gallery of the most suspicious cells (images inlined)."""
    cells = result.cells
    counts = class_counts(cells)
    p_values = [c[P_ABNORMAL] for c in cells if c.get(P_ABNORMAL) is not None]
    items = []
    for cell, png in gallery:
        data = base64.b64encode(png.read_bytes()).decode()
        p = cell.get(P_ABNORMAL)
        items.append(
            f'<figure id="cell-{cell["cell_id"]}"><img src="data:image/png;base64,{data}" alt="cell {cell["cell_id"]}">'
            f'<figcaption><b>cell {cell["cell_id"]}</b>: {html.escape(verdict_of(cell))}'
            f'{"" if p is None else f", p(abnormal) {p:.2f}"}<br>at (y {cell["y"]:.0f}, x {cell["x"]:.0f})'
            f'{"<br>" + html.escape(cell["not_judgeable"]) if cell.get("not_judgeable") else ""}</figcaption></figure>')
    name = html.escape(Path(result.slide).name)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>cervseg: {name}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}figure{{display:inline-block;margin:6px;
width:300px;vertical-align:top}}figure img{{max-width:300px}}figcaption{{font-size:12px}}</style></head><body>
<h1>{name}</h1>
<p>{result.shape[1]} x {result.shape[0]} px, {result.tiles_total} tiles of {config.tile} px,
{len(cells)} cells in {result.seconds:.0f} s. Classifier <code>{html.escape(str(config.model))}</code>,
method <code>{html.escape(config.method)}</code>, finder <code>{html.escape(str(config.finder))}</code>,
operating point <code>{html.escape(str(config.operating_point))}</code>, white balance of the cells' crops
<code>{html.escape(str(config.white_balance))}</code>.</p>
<h2>Cells per class</h2>
<table><tr><th>abnormal</th><th>normal</th><th>no verdict</th><th>all</th></tr>
<tr><td>{counts["n_abnormal"]}</td><td>{counts["n_normal"]}</td><td>{counts["n_no_verdict"]}</td><td>{len(cells)}</td></tr></table>
{_left_out_text(result.left_out)}
<h2>p(abnormal)</h2>{_svg_histogram(p_values)}
<h2>N/C ratio against nucleus area</h2>{_svg_scatter(cells)}
<h2>The {len(gallery)} most suspicious cells (crop | heatmap)</h2>{"".join(items) or "<p>No cells.</p>"}
<h2>Notes</h2><ul>{"".join(f"<li>{html.escape(w)}</li>" for w in result.warnings[:200]) or "<li>none</li>"}</ul>
</body></html>"""
    write_text_atomic(path, page)
    return path


def _left_out_text(left_out) -> str:
    if not left_out:
        return ""
    from .fields import LEFT_OUT_DESCRIPTION

    return (f"<p>{len(left_out)} {html.escape(LEFT_OUT_DESCRIPTION)}. They are points of class \"Left out\" in"
            " the GeoJSON, to look at.</p>")


def write_outputs(result, slide, config, model, gallery: int = 24) -> None:
    """Everything a finished slide run writes into its folder; ``model`` is the classifier loaded
    for ``config.model`` (the gallery's heatmaps)."""
    out = result.out
    write_table(out, table_rows(result.cells, read_reviews(out)))
    write_geojson(out / GEOJSON, result.cells, result.left_out)
    shown = write_gallery(out, slide, result.cells, model, config.method, gallery) if gallery else []
    write_report(out / REPORT, result, shown, config)
    write_text_atomic(out / SUMMARY, json.dumps(result.summary(), indent=1))
