"""The process: service wiring, daemon lifecycle, CLI, logs, demo."""
