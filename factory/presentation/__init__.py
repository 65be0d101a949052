"""Presentation: the HTML viewer and GIF/MP4/PNG renders (`render`, `viewer/`) and the library's HTML
report (`library_report`). A run's Markdown report is `factory.distribution.report`."""
