"""Leaving cnnrun: a trained model as an ONNX graph (``cnnrun export``)."""
