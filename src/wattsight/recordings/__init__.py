"""Recordings (scenarios and their steps) and jobs: stored, and their energy reported (in progress)."""
