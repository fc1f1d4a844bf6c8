"""Scanning at run time: decode, run the exported models, build a :class:`ScanResult`.

Needs NumPy, Pillow and ONNX Runtime only; never imports training, web or cli (a test enforces it).
"""
