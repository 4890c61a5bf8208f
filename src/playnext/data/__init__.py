"""Data layer: raw files → `Interactions` → splits."""
