"""Export of a chosen subnet: quantization-aware training, int8 TFLite conversion, parity checks and the app-team bundle."""
