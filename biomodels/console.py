"""The `biomodels` console command: `biomodels prepare|train|evaluate|export|predict ...`
runs the same command as `python -m biomodels.<command> ...`, with the same flags."""

import importlib
import sys

COMMANDS = {"prepare": "biomodels.prepare", "train": "biomodels.train", "evaluate": "biomodels.evaluate",
            "export": "biomodels.export.__main__", "predict": "biomodels.predict"}
USAGE = ("usage: biomodels {prepare,train,evaluate,export,predict} [flags]\n"
         "       biomodels COMMAND --help lists the command's flags (with --task=NAME, the task's own)")


def main(argv=None):
    """Run the command named by the first argument; a missing or unknown one is one
    line and exit status 2."""
    from biomodels import cli

    argv = sys.argv if argv is None else argv
    if len(argv) < 2:
        print(USAGE, file=sys.stderr)
        sys.exit(cli.EXIT_USER_ERROR)
    if argv[1] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0)
    if argv[1] not in COMMANDS:
        print(f"error: unknown command {argv[1]!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(cli.EXIT_USER_ERROR)
    command = importlib.import_module(COMMANDS[argv[1]])
    sys.argv = [f"biomodels {argv[1]}", *argv[2:]]  # what the command's flags and --help read
    cli.import_tensorflow()
    command.define_flags()
    cli.run(command.main)


if __name__ == "__main__":
    main()
