"""Train a searched genotype from scratch on CIFAR-10 and evaluate its robustness, configured with gin.

Examples::

    python examples/train_cifar10.py --gin_file=train.gin --genotype=runs/max-20260101-120000   # paper section 4.2
    python examples/train_cifar10.py --gin_file=adv_train.gin --genotype=DARTS_V2              # PGD-7 (section 4.3)
    python examples/train_cifar10.py --gin_file=trades.gin --genotype=runs/max-.../genotype.json
    python examples/train_cifar10.py --gin_file=train_quickstart.gin --genotype=DARTS_V2       # offline, minutes
    python examples/train_cifar10.py --resume --run_dir runs/train-20260101-120000
    # data-parallel: Trainer.batch_size (96) is the global batch, split over the processes
    torchrun --nproc_per_node=4 examples/train_cifar10.py --gin_file=train.gin --genotype=DARTS_V2 --run_dir runs/train4
    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --master_addr=HOST0 --master_port=29500 \
        examples/train_cifar10.py --gin_file=train.gin --genotype=DARTS_V2 --run_dir runs/train16

``--genotype`` is a ``genotype.json``, a search's run folder or a published name (DARTS_V1,
DARTS_V2). The run folder receives ``checkpoint.pt`` (every epoch), ``best.pt`` (the epoch selected
on held-out training images) and, at the end, ``results.json`` and ``results.md`` (clean, FGSM,
PGD-20 on the test set). The same program as the installed console script ``rnas-train``; bare gin
file names are looked up among the packaged configs and in this folder. Under ``torchrun``, rank
0 alone writes the run folder, evaluates and prints the table; pass ``--run_dir`` so that every
process names the same folder.
"""

from pathlib import Path

from rnasframe.cli import train_main

if __name__ == "__main__":
    raise SystemExit(train_main(examples_dir=Path(__file__).resolve().parent))
