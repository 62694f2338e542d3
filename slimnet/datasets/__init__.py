"""The splits: preparing them (read a source, fingerprint it, check it, split it, project it)
and loading them (load.py).

Only the data-side stages (scan, data, project) import the preparation modules. Every other
stage loads the prepared split files through `slimnet.datasets.load` alone, so editing the
preparation code never reruns them.
"""
