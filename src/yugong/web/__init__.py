"""The web console: server-rendered pages (Jinja2 templates, htmx, ECharts) in Simplified
Chinese and English, under ``/console``."""
