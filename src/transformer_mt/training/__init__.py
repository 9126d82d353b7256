"""Training: the LightningModule (`translation_model`), the label-smoothed loss (`loss`), Adam
with the paper's schedule (`optimizer`), what `fit` adds to Lightning (atomic checkpoint files
and a last.ckpt at the end of every run, `checkpointing`; exact resumption after SIGINT/SIGTERM,
`resume`) and checkpoint averaging (`averaging`). The command line that installs them is
`transformer-mt fit` (`commands.train`).

This module imports nothing: `average` reads the file name below without loading Lightning.
"""

# What SIGINT/SIGTERM during `fit` saves, beside last.ckpt (`--ckpt_path last` takes the newer).
INTERRUPTED_NAME = "interrupted.ckpt"
