"""osteolens: AI-assisted analysis of bone tumours in medical images.

Research software, not a medical device: no output of osteolens is fit for diagnosis.
"""

__version__ = "0.1.0"

#: Printed on, and stored in, every output osteolens writes.
RESEARCH_NOTICE = "osteolens: research use only, not for diagnosis (not a medical device)."

__all__ = ["__version__", "RESEARCH_NOTICE"]
