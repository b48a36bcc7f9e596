"""A LiveKit-compatible development server for tests, the demo and local work.

Production uses a real LiveKit server or LiveKit Cloud.
"""
