"""Presentation: the HTML viewer and GIF/MP4 renders (`render`, `viewer/`), the library's HTML
report (`library_report`) and a run's Markdown report (`report`)."""
