"""The student model: the base checkpoint made from the packaged GGUF, and its tool-aware chat template."""
