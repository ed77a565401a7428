"""The dashboard's views; each module has ``render(ctx)``."""
