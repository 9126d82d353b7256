"""What `fit` adds to Lightning: atomic checkpoint files and a last.ckpt at the end of every run
(`checkpoints`), and exact resumption after SIGINT/SIGTERM (`resume`). The command-line wiring
that installs them is `transformer_mt.train_cli`.

This module imports nothing: `average` reads the file name below without loading Lightning.
"""

# What SIGINT/SIGTERM during `fit` saves, beside last.ckpt (`--ckpt_path last` takes the newer).
INTERRUPTED_NAME = "interrupted.ckpt"
