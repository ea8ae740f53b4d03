"""Shared ``--kernel/--paravirt/--pt-reclaim/--batch/...`` options for simulator commands."""

from __future__ import annotations

import argparse

from ptlab.config import BATCH_CHOICES, KERNELS, PARAVIRT_ENVS, Config, parse_on_off


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", default="v6.14", metavar="K",
                   help=f"kernel model: {', '.join(KERNELS)} (default v6.14)")
    p.add_argument("--paravirt", default="native", metavar="ENV",
                   help=f"environment: {', '.join(PARAVIRT_ENVS)} (default native)")
    p.add_argument("--pt-reclaim", default="on", metavar="on|off",
                   help="CONFIG_PT_RECLAIM (default on)")
    p.add_argument("--batch", default="ok", metavar="ok|fails",
                   help=f"GFP_NOWAIT batch page: {', '.join(BATCH_CHOICES)} (default ok)")
    p.add_argument("--preempt-rcu", default="on", metavar="on|off",
                   help="CONFIG_PREEMPT_RCU (default on)")
    p.add_argument("--cpus", type=str, default="2", metavar="N",
                   help="number of CPUs, 1-4 (default 2; scenarios add CPUs they need)")


def config_from_args(args: argparse.Namespace) -> Config:
    try:
        ncpus = int(args.cpus)
    except ValueError:
        raise ValueError(f"--cpus must be a number from 1 to 4, not {args.cpus!r}") from None
    return Config(
        kernel=args.kernel,
        paravirt=args.paravirt,
        pt_reclaim=parse_on_off(args.pt_reclaim, "--pt-reclaim"),
        batch=args.batch,
        preempt_rcu=parse_on_off(args.preempt_rcu, "--preempt-rcu"),
        ncpus=ncpus,
    )
