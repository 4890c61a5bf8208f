"""Recommenders, one per file, registered by name."""

from playnext.models.base import ModelConfig, Recommender
from playnext.models.registry import create, get, names, register

__all__ = ["ModelConfig", "Recommender", "create", "get", "names", "register"]
