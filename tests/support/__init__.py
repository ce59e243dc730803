"""Test helpers that run real servers on free 127.0.0.1 ports (``serve``: regtool serve; ``distribution``)."""
