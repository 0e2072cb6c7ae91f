"""The command line. One module per command group; each module only imports typer at the top and
does its heavy imports inside the command bodies, so `fqvae --help` is instant."""
