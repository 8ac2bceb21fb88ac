from lr_from_scratch.cli import starting_command

starting_command()  # python -m benchmarks.<command>: checks made, and a Ctrl-C handled, before libraries load
