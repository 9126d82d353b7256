"""What `fit` adds to Lightning: atomic checkpoint files and a last.ckpt at the end of every run
(`checkpoints`), and exact resumption after SIGINT/SIGTERM (`resume`). The command-line wiring
that installs them is `transformer_mt.train_cli`."""
