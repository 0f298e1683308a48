"""Serving: the prediction API, its runtime, the online-feature lookup, captures and ONNX packaging."""
