"""Data: the joint sentencepiece vocabulary (`tokenizer`), corpus readers (`corpus`), the
prepared-data cache built once per machine (`cache`, with `encode_worker`), token-bucket
batching (`batching`) and the LightningDataModule (`datamodule`)."""
