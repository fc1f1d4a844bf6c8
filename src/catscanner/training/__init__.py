"""Training, fitting, export and evaluation (PyTorch, scikit-learn, matplotlib: ``pip install "catscanner[train]"``).

Imports :mod:`catscanner.runtime` (downward), never the web or CLI packages.
"""
