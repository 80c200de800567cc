"""Pure numpy / torch / OpenCV core: never imports Qt or napari."""
