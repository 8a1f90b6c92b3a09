"""Give every failure a class, a subclass and a fingerprint.

``classify(text)`` reads what a failed compile printed (or a saved log) and
returns a ``tritriage.model.Diagnosis``; ``clean(text)`` returns the lines a
report should show.  The rules live in ``patterns.yaml`` and ``prefixes.yaml``
next to this file; ``load_patterns`` checks a patterns file.
"""

from .engine import Classifier, classify, clean, relative_path
from .rules import CLASSES, load_patterns, load_text_rules

__all__ = ["CLASSES", "Classifier", "classify", "clean", "load_patterns", "load_text_rules", "relative_path"]
