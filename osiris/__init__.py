"""OSIRIS: a human-in-the-loop gate between requesters and AI coding agents."""

__version__ = "0.1.0"
