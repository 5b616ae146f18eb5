"""The options of the pipelines as frozen dataclasses: adapt, training, the demo, the report; defaults and help live here."""
