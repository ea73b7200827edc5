"""aqr: analysis and visualization of AQR (adaptive query reweighting) for CMT-style detectors."""

__version__ = "0.1.0"
