import subprocess
import sys
from importlib import resources

import numpy as np


def test_installed_package_ships_a_valid_manifest():
    manifest = resources.files("napari_cervseg") / "napari.yaml"
    assert manifest.is_file()
    out = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-cervseg"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sample_data_and_label_reader_writer_roundtrip(tmp_path):
    from napari_cervseg.plugin.reader import get_reader
    from napari_cervseg.plugin.samples import abnormal_cell, normal_cell
    from napari_cervseg.plugin.writer import write_labels

    for layers in (abnormal_cell(), normal_cell()):
        data, meta, kind = layers[0]
        assert kind == "image" and data.ndim == 3 and data.dtype == np.uint8 and meta["rgb"]
    labels = np.zeros((20, 30), np.uint8)
    labels[5:15, 5:25] = 1
    labels[8:12, 10:20] = 2
    path = write_labels(str(tmp_path / "cell_labels.png"), labels, {"name": "cell"})[0]
    reader = get_reader(path)
    data, meta, kind = reader(path)[0]
    assert kind == "labels"
    np.testing.assert_array_equal(data, labels)
    assert get_reader(str(tmp_path / "photo.png")) is None
    (tmp_path / "masks").mkdir()
    herlev = write_labels(str(tmp_path / "masks" / "149143370-149143378-001.png"), labels, {})[0]
    assert get_reader(herlev)(herlev)[0][2] == "labels"
