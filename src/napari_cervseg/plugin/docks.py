"""Docking a widget once: shared by the menu commands and the widgets that open one another."""


def docked(viewer, widget_cls, dock_name: str):
    """The open dock widget of this kind (reused: a second menu click must not stack a copy), or a
    new one docked under ``dock_name``."""
    open_docks = getattr(viewer.window, "dock_widgets", {}) or {}
    for widget in open_docks.values():
        if type(widget) is widget_cls:
            return widget
    widget = widget_cls(viewer)
    viewer.window.add_dock_widget(widget, name=dock_name, area="right")
    return widget
