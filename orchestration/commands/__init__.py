"""One module per `curate` subcommand: each defines HELP, add_arguments(parser) and run(args).

Modules import only the standard library at top level so `curate --help` stays fast; heavy
imports (Beam, torch, faiss, duckdb) happen inside run().
"""
