import subprocess
import sys
import textwrap


def test_core_and_api_import_and_run_without_qt_or_napari():
    """Block every Qt binding and napari at import time: the library must still work."""
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'qtpy', 'napari', 'magicgui', 'superqt', 'vispy'}:
                    raise ImportError('blocked ' + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        import napari_cervseg
        from napari_cervseg import segment_cell, measure
        from napari_cervseg.core.synthetic import synthetic_cell
        rgb, truth, _ = synthetic_cell(seed=1)
        r = segment_cell(rgb, model=None, method='colour-baseline')
        assert measure(r.labels)['nucleus_area'] > 0
        bad = [m for m in sys.modules if m.split('.')[0] in {'PyQt5', 'PyQt6', 'qtpy', 'napari'}]
        assert not bad, bad
        print('ok')
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
