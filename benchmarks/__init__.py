from lr_from_scratch.cli import quiet_while_starting

quiet_while_starting()  # python -m benchmarks.<command>: a Ctrl-C while it starts is one line
