"""Preparing the splits: read a source, fingerprint it, check it, split it, project it.

Only the data-side stages (scan, data, project) import this package. Every other stage loads
the prepared split files through `slimnet.datasets.load`, so editing code here never reruns them.
"""
