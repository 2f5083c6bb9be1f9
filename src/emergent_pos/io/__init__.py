"""Plumbing shared by every phase: atomic files and hashes, stage entry points."""
