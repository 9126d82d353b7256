"""Data: the joint sentencepiece vocabulary, corpus readers, token-bucket batching."""
